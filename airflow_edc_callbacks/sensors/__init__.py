"""Sensors of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.sensors.transfer import EdcTransferSensor, EdcTransferSensorTimeout

__all__ = ["EdcTransferSensor", "EdcTransferSensorTimeout"]
