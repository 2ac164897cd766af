"""Sensors of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.sensors.transfer import EdcTransferSensor

__all__ = ["EdcTransferSensor"]
