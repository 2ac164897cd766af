"""The task side of a wait, for operators and sensors alike: arm a trigger, defer to it or run it in the
worker (:func:`defer_or_wait`), and turn a transfer trigger's event back into the task's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_edc_callbacks.config import get_worker_exit_seconds
from airflow_edc_callbacks.exceptions import EdcCallbacksError, EdcTransferFailed, EdcTransferTimeout
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import Outcome, Source
from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.inline import first_event
from airflow_edc_callbacks.triggers.negotiation import EdcNegotiationTrigger
from airflow_edc_callbacks.triggers.results import TransferResult, parse_event

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.triggers.base import BaseTrigger

ProcessTrigger = EdcCallbackTrigger | EdcNegotiationTrigger
"""A trigger that waits for one process (it has a deadline and holds an early event)."""

DEFER_TIMEOUT_MARGIN = timedelta(seconds=60)
"""How much longer than the task's ``timeout`` Airflow's own deferral time-out is: the trigger decides
first (with the last state and a terminate), Airflow's generic time-out is only a safety net."""


def arm(trigger: ProcessTrigger, timeout: timedelta, *, terminate_on_kill: bool) -> None:
    """Give a trigger its deadline (now + ``timeout``), the start of the wait and the kill behaviour."""
    now = time.time()
    trigger.waiting_since = now
    trigger.deadline = now + timeout.total_seconds()
    trigger.terminate_on_kill = terminate_on_kill


def safety_net(timeout: timedelta) -> timedelta:
    """Airflow's deferral time-out (or the in-worker wait's bound) for a task ``timeout``: a little longer
    (:data:`DEFER_TIMEOUT_MARGIN`), so the trigger's own time-out comes first."""
    return timeout + DEFER_TIMEOUT_MARGIN


def defer_or_wait(
    task: BaseOperator,
    trigger: BaseTrigger,
    context: Context,
    *,
    deferrable: bool,
    resume: Callable[..., Any],
    timeout: timedelta,
    on_timeout: Callable[[TimeoutError], dict[str, Any]],
    kwargs: Mapping[str, Any] | None = None,
    while_waiting: AbstractContextManager[Any] | None = None,
) -> Any:
    """Defer the task to ``trigger``, or run ``trigger`` in the worker; either way the task goes on in
    ``resume(context, event, **kwargs)``.

    :param resume: the task's bound method to resume in (deferred: Airflow calls it by name, with
        ``kwargs``, which must be JSON-able).
    :param timeout: Airflow's deferral time-out; in the worker the longest wait for the first event.
    :param on_timeout: in the worker, when ``timeout`` passed without an event: the event to resume
        with (or it raises).
    :param while_waiting: entered around the wait in the worker only (an operator's ``on_kill`` target).
    :raises TaskDeferred: when ``deferrable`` (Airflow's way to defer). A process trigger then holds an
        event that comes quicker than the deferring worker reports (see
        :func:`~airflow_edc_callbacks.config.get_worker_exit_seconds`).
    """
    kwargs = dict(kwargs or {})
    if deferrable:
        if isinstance(trigger, ProcessTrigger):
            trigger.not_before = time.time() + get_worker_exit_seconds()
        task.defer(trigger=trigger, method_name=resume.__name__, kwargs=kwargs, timeout=timeout)
    with while_waiting or contextlib.nullcontext():
        try:
            event = asyncio.run(first_event(trigger, timeout.total_seconds()))
        except TimeoutError as err:
            event = on_timeout(err)
    return resume(context, event, **kwargs)


def connector_url(edc_conn_id: str) -> str:
    """The Management API URL of a connection, for error messages (never fails)."""
    try:
        return EdcManagementHook(edc_conn_id).settings.base_url
    except (EdcCallbacksError, ValueError, LookupError):
        return f"connection {edc_conn_id!r}"


def complete_transfer(
    task: BaseOperator,
    event: Mapping[str, Any] | None,
    edc_conn_id: str,
    *,
    timeout_error: type[EdcTransferTimeout] = EdcTransferTimeout,
    before_timeout: Callable[[TransferResult], str | None] | None = None,
) -> dict[str, Any]:
    """Turn an :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger` event into the task's
    XCom result (see :meth:`TransferResult.xcom`); logs the timeline.

    :param before_timeout: for a ``timeout`` event, called first (an operator terminates the transfer);
        what it returns (what became of the transfer) ends the error's message.
    :raises TriggerEventError: no event, or a malformed one.
    :raises EdcTransferFailed: the transfer was terminated (names the transfer, connector, state, reason).
    :raises EdcTransferTimeout: a ``timeout`` event (``timeout_error``; names the transfer, connector,
        last state, wait).
    """
    result = parse_event(TransferResult, event, task.task_id)
    transfer_id = result.transfer_process_id
    result.log_timeline(task.log, "Transfer process")
    if result.status is Outcome.TIMEOUT:
        outcome = before_timeout(result) if before_timeout is not None else None
        raise timeout_error(
            transfer_id, connector_url(edc_conn_id), result.state or "UNKNOWN", result.waited_seconds or 0.0, outcome
        )
    if result.source is Source.STATE_CHECK:
        task.log.warning(
            "Transfer process %s: the result came from a state check, not a callback "
            "(callbacks were lost or the receiver was unreachable)",
            transfer_id,
        )
    if result.status is Outcome.FAILED:
        raise EdcTransferFailed(transfer_id, connector_url(edc_conn_id), str(result.state), result.reason)
    task.log.info("Transfer process %s is %s", transfer_id, result.state)
    return result.xcom()
