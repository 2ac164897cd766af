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
    defer_after: float = 0.0,
) -> Any:
    """Defer the task to ``trigger``, or run ``trigger`` in the worker; either way the task goes on in
    ``resume(context, event, **kwargs)``.

    When ``deferrable`` and ``defer_after`` > 0, a process trigger first runs in the worker for up to
    ``defer_after`` seconds (:func:`wait_before_deferring`): an event within them resumes the task at once,
    without a deferral; otherwise the task defers to the same trigger, as with ``defer_after=0``.

    :param resume: the task's bound method to resume in (deferred: Airflow calls it by name, with
        ``kwargs``, which must be JSON-able).
    :param timeout: Airflow's deferral time-out; in the worker the longest wait for the first event.
    :param on_timeout: in the worker, when ``timeout`` passed without an event: the event to resume
        with (or it raises).
    :param while_waiting: entered around the wait in the worker only (an operator's ``on_kill`` target).
    :param defer_after: seconds a deferrable process trigger runs in the worker before the deferral
        (0: defer at once; a sensor's trigger always defers at once).
    :raises TaskDeferred: when ``deferrable`` (Airflow's way to defer). A process trigger then holds an
        event that comes quicker than the deferring worker reports (see
        :func:`~airflow_edc_callbacks.config.get_worker_exit_seconds`).
    """
    kwargs = dict(kwargs or {})
    if deferrable:
        if isinstance(trigger, ProcessTrigger) and defer_after > 0:
            early = wait_before_deferring(task, trigger, defer_after, while_waiting)
            if early is not None:
                return resume(context, early, **kwargs)
        if isinstance(trigger, ProcessTrigger):
            trigger.not_before = time.time() + get_worker_exit_seconds()
        task.defer(trigger=trigger, method_name=resume.__name__, kwargs=kwargs, timeout=timeout)
    with while_waiting or contextlib.nullcontext():
        try:
            event = asyncio.run(first_event(trigger, timeout.total_seconds()))
        except TimeoutError as err:
            event = on_timeout(err)
    return resume(context, event, **kwargs)


def wait_before_deferring(
    task: BaseOperator,
    trigger: ProcessTrigger,
    seconds: float,
    while_waiting: AbstractContextManager[Any] | None = None,
) -> dict[str, Any] | None:
    """Run ``trigger`` in the worker for up to ``seconds``: its event, or ``None`` when none came (the
    task then defers to the same trigger).

    The same wait as in the triggerer (the engine: store first, then the listener; only trusted events
    count), without the hold of an early event (``not_before``): no deferral happened, so Airflow's
    early-trigger race (apache/airflow#71580) cannot occur. A trigger ``deadline`` within ``seconds``
    gives its ``timeout`` event here, as it would deferred.
    """
    trigger.not_before = None
    with while_waiting or contextlib.nullcontext():
        try:
            event = asyncio.run(first_event(trigger, seconds))
        except TimeoutError:
            task.log.info("No final event within %.1f s in the worker; deferring", seconds)
            return None
    task.log.info("The process ended within %.1f s in the worker; resuming without a deferral", seconds)
    return event


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
            transfer_id,
            connector_url(edc_conn_id),
            result.state or "UNKNOWN",
            result.waited_seconds or 0.0,
            outcome,
            result.reason,
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
