"""Triggers of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.events import EdcCallbackEventTrigger
from airflow_edc_callbacks.triggers.negotiation import EdcNegotiationTrigger

__all__ = ["EdcCallbackEventTrigger", "EdcCallbackTrigger", "EdcNegotiationTrigger"]
