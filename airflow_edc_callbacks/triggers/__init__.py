"""Triggers of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger

__all__ = ["EdcCallbackTrigger"]
