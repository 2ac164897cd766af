"""EdcTransferSensor: what it defers on (a known transfer; a transfer found first by asset) and its input checks."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from airflow_edc_callbacks.exceptions import TriggerEventError
from airflow_edc_callbacks.sensors import EdcTransferSensor
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger, EdcCallbackTrigger
from tests.airflow_compat import TaskDeferred, deferral_timeout


def test_sensor_defers_on_the_transfer_with_no_token() -> None:
    sensor = EdcTransferSensor(task_id="wait", transfer_process_id="tp-9", deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})  # type: ignore[arg-type]
    trigger = info.value.trigger
    assert isinstance(trigger, EdcCallbackTrigger)
    assert (trigger.correlation_id, trigger.transfer_process_id) == (None, "tp-9")
    # the trigger's own deadline decides (typed error); Airflow's deferral time-out is a later safety net
    assert deferral_timeout(info.value) == timedelta(hours=24) + timedelta(seconds=60)
    assert trigger.deadline is not None
    assert abs(trigger.deadline - (time.time() + 24 * 3600)) < 60
    assert trigger.terminate_on_kill is False  # a sensor never terminates a transfer it did not start


def test_sensor_by_asset_first_finds_the_transfer() -> None:
    sensor = EdcTransferSensor(task_id="wait", asset_id="demo-asset", timeout=600, deferrable=True)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})  # type: ignore[arg-type]
    finder = info.value.trigger
    assert isinstance(finder, EdcCallbackEventTrigger)
    assert (finder.asset_id, finder.process_type, finder.one_shot) == ("demo-asset", "CONSUMER", True)
    assert info.value.method_name == "transfer_found"
    with pytest.raises(TaskDeferred) as then:
        sensor.transfer_found({}, {"process_id": "tp-found", "event_type": "TransferProcessInitiated"})  # type: ignore[arg-type]
    assert then.value.trigger.transfer_process_id == "tp-found"
    with pytest.raises(TriggerEventError):
        sensor.transfer_found({}, {})  # type: ignore[arg-type]


def test_sensor_needs_a_target() -> None:
    with pytest.raises(ValueError, match="transfer_process_id, asset_id or contract_id"):
        EdcTransferSensor(task_id="wait").execute({})  # type: ignore[arg-type]
