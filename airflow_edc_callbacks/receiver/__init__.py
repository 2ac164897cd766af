"""The callback receiver (FastAPI)."""

from __future__ import annotations

from airflow_edc_callbacks.receiver.app import ReceiverSettings, create_app

__all__ = ["ReceiverSettings", "create_app"]
