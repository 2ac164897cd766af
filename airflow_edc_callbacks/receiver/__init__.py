"""The callback receiver (FastAPI)."""

from __future__ import annotations

from airflow_edc_callbacks.receiver.app import create_app
from airflow_edc_callbacks.receiver.dependencies import get_settings
from airflow_edc_callbacks.receiver.responses import CallbackOutcome
from airflow_edc_callbacks.receiver.settings import ReceiverSettings

__all__ = ["CallbackOutcome", "ReceiverSettings", "create_app", "get_settings"]
