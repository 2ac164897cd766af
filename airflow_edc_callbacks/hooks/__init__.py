"""Hooks of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.hooks.edc import EdcConnectionSettings, EdcManagementHook

__all__ = ["EdcConnectionSettings", "EdcManagementHook"]
