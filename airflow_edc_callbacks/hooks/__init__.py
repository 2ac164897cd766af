"""Hooks of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.hooks.edc import EdcConnectionSettings, EdcManagementHook
from airflow_edc_callbacks.hooks.ledger import CallbackLedger

__all__ = ["CallbackLedger", "EdcConnectionSettings", "EdcManagementHook"]
