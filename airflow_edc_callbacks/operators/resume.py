"""What the EDC operators and sensors share when they defer and resume."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.exceptions import EdcCallbacksError, TriggerEventError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import iso_from_epoch_ms

__all__ = ["connector_url", "log_timeline", "validate_event", "worker_exit_seconds"]


def worker_exit_seconds() -> float:
    """Seconds a worker may take to report a deferral: ``[workers] min_heartbeat_interval`` (5) + 1.

    Triggers hold their event that long after the deferral: Airflow 3.3 fails a task whose trigger fires
    before the deferring worker has reported (apache/airflow#71580, #72716).
    """
    from airflow.configuration import conf

    return conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0) + 1.0


def validate_event(task: BaseOperator, event: dict[str, Any] | None) -> dict[str, Any]:
    """Return the trigger event, or raise for one the task cannot interpret.

    :raises TriggerEventError: the event is missing or its ``status`` is not ``success``/``failed``/``timeout``.
    """
    if not event or event.get("status") not in ("success", "failed", "timeout"):
        raise TriggerEventError(f"Unexpected trigger event for {task.task_id}: {event!r}")
    return event


def log_timeline(task: BaseOperator, label: str, process_id: str, timeline: Iterable[Mapping[str, Any]]) -> None:
    """Write each callback event of ``timeline`` to the task log with its times."""
    for item in timeline:
        task.log.info(
            "%s %s: %s at %s (received %s)",
            label,
            process_id,
            item.get("type"),
            iso_from_epoch_ms(int(item.get("at", 0))),
            iso_from_epoch_ms(int(item.get("received_at", 0))),
        )


def connector_url(edc_conn_id: str) -> str:
    """The Management API URL of a connection, for error messages (never fails)."""
    try:
        return EdcManagementHook(edc_conn_id).settings.base_url
    except (EdcCallbacksError, ValueError, LookupError):
        return f"connection {edc_conn_id!r}"
