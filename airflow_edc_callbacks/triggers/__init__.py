"""Triggers of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.events import EdcCallbackEventTrigger

__all__ = ["EdcCallbackEventTrigger", "EdcCallbackTrigger"]
