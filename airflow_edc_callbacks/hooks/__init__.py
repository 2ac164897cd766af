"""Hooks of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.hooks.base import EdcConnectionSettings
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.hooks.ledger import CallbackLedger

__all__ = ["CallbackLedger", "EdcConnectionSettings", "EdcManagementHook"]
