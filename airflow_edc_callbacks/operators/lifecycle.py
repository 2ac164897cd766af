"""Time-outs and kills of the processes an operator started: the deadline its trigger gets, the typed
error at the time-out, and the best-effort terminate on the connector (operators only; a sensor never
terminates a transfer it did not start)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from airflow_edc_callbacks.exceptions import (
    EdcApiError,
    EdcCallbacksError,
    EdcNegotiationTimeout,
    EdcProcessTimeout,
    EdcTransferTimeout,
)
from airflow_edc_callbacks.models import FINAL_PROCESS_STATES, jsonld_get

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.triggers.callback import EdcCallbackTrigger

__all__ = [
    "DEFER_TIMEOUT_MARGIN",
    "ProcessKind",
    "Termination",
    "arm",
    "raise_timeout",
    "safety_net",
    "terminate_process",
    "terminate_when_killed",
]

ProcessKind = Literal["transfer", "negotiation"]

DEFER_TIMEOUT_MARGIN = timedelta(seconds=60)
"""How much longer than the task's ``timeout`` Airflow's own deferral time-out is: the trigger decides
first (with the last state and a terminate), Airflow's generic time-out is only a safety net."""


_LABELS: dict[str, str] = {"transfer": "transfer process", "negotiation": "contract negotiation"}


class TaskLog(Protocol):
    """What :func:`terminate_process` logs to: a task's ``log`` or a ``logging.Logger``."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


class Termination(NamedTuple):
    """What a terminate did.

    :ivar done: the connector took the terminate, or the process was final already.
    :ivar detail: what became of the process, for a message, e.g. ``it was COMPLETED already``.
    :ivar accepted: the connector took the terminate (``done`` without it: final already).
    """

    done: bool
    detail: str
    accepted: bool = False


def arm(trigger: EdcCallbackTrigger, timeout: timedelta, *, terminate_on_kill: bool) -> None:
    """Give a trigger its deadline (now + ``timeout``), the start of the wait and the kill behaviour."""
    now = time.time()
    trigger.waiting_since = now
    trigger.deadline = now + timeout.total_seconds()
    trigger.terminate_on_kill = terminate_on_kill


def safety_net(timeout: timedelta) -> timedelta:
    """Airflow's deferral time-out (or the in-worker wait's bound) for a task ``timeout``: a little longer
    (:data:`DEFER_TIMEOUT_MARGIN`), so the trigger's own time-out comes first."""
    return timeout + DEFER_TIMEOUT_MARGIN


def terminate_process(
    log: TaskLog, hook: EdcManagementHook, kind: ProcessKind, process_id: str, reason: str
) -> Termination:
    """Terminate a transfer process or contract negotiation on the connector; never raises.

    ``POST /{version}/transferprocesses/{id}/terminate`` or ``.../contractnegotiations/{id}/terminate``.
    A refusal (EDC answers 409, or 400, for a process already final or not terminable in its state) is
    followed by one state read: a final process counts as done. Anything else is logged as a warning
    (EDC can refuse to terminate a ``REQUESTED`` negotiation, eclipse-edc/Connector#3814).

    :param log: where to say what happened (a task's ``log``).
    :returns: whether it is terminated (or final) and what became of it, for the task's messages.
    """
    label = f"{_LABELS[kind]} {process_id}"
    try:
        if kind == "transfer":
            hook.terminate_transfer(process_id, reason)
        else:
            hook.terminate_negotiation(process_id, reason)
    except EdcApiError as err:
        if err.status_code in (400, 409):
            state = _state(hook, kind, process_id)
            if state in FINAL_PROCESS_STATES:
                log.info("%s was %s already; nothing to terminate", label.capitalize(), state)
                return Termination(True, f"it was {state} already")
            log.warning("Could not terminate %s (state %s) on the connector: %s", label, state, err)
            return Termination(False, f"terminating it failed ({err})")
        log.warning("Could not terminate %s on the connector: %s", label, err)
        return Termination(False, f"terminating it failed ({err})")
    except EdcCallbacksError as err:
        log.warning("Could not terminate %s on the connector: %s", label, err)
        return Termination(False, f"terminating it failed ({err})")
    log.info("Terminated %s on %s: %s", label, hook.settings.base_url, reason)
    return Termination(True, "terminate requested on the connector", accepted=True)


def terminate_when_killed(
    task: BaseOperator, hook: EdcManagementHook, waiting_on: tuple[ProcessKind, str] | None, enabled: bool
) -> None:
    """An operator's ``on_kill`` while it waits in the worker: terminate the process it waits for (``kind``,
    id) when ``enabled`` (its ``terminate_on_kill``); nothing when it waits for none. Never raises."""
    if waiting_on is None or not enabled:
        return
    kind, process_id = waiting_on
    terminate_process(task.log, hook, kind, process_id, f"Airflow task {task.task_id} was killed")


def _state(hook: EdcManagementHook, kind: ProcessKind, process_id: str) -> str | None:
    """The process's state on the connector (``GET .../transferprocesses/{id}/state``, or the negotiation),
    or ``None`` when it cannot be read."""
    try:
        if kind == "transfer":
            return hook.get_transfer_state(process_id).upper() or None
        return str(jsonld_get(hook.get_negotiation(process_id), "state", "")).upper() or None
    except EdcCallbacksError:
        return None


def raise_timeout(
    task: BaseOperator,
    event: dict[str, Any],
    *,
    kind: ProcessKind,
    hook: EdcManagementHook,
    connector: str,
    terminate: bool,
    error: type[EdcProcessTimeout] | None = None,
) -> None:
    """Fail the task for a trigger's ``timeout`` event, after terminating the process when ``terminate``.

    :param event: the trigger's ``timeout`` event (``state``, ``waited_seconds`` and the process id).
    :param connector: the connector's Management API URL (for the message).
    :param error: the error class; default :class:`EdcTransferTimeout` / :class:`EdcNegotiationTimeout`.
    :raises EdcProcessTimeout: always (the given class).
    """
    process_id = str(event.get("transfer_process_id") or event.get("contract_negotiation_id"))
    state = str(event.get("state") or "UNKNOWN")
    waited = float(event.get("waited_seconds") or 0.0)
    outcome = None
    if terminate:
        reason = f"Airflow task {task.task_id} timed out after {waited:.0f} s in state {state}"
        outcome = terminate_process(task.log, hook, kind, process_id, reason).detail
    if error is None:
        error = EdcTransferTimeout if kind == "transfer" else EdcNegotiationTimeout
    raise error(process_id, connector, state, waited, outcome)
