"""Time-outs and kills of the processes an operator started: the best-effort terminate on the connector
at the time-out, when the task is killed while it waits in the worker, or after a PULL's fetch
(operators only; a sensor never terminates a transfer it did not start)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from airflow_edc_callbacks.exceptions import EdcApiError, EdcCallbacksError
from airflow_edc_callbacks.models import FINAL_PROCESS_STATES, jsonld_get
from airflow_edc_callbacks.triggers.kinds import KindName

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.triggers.results import WaitResult

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


def terminate_process(
    log: TaskLog, hook: EdcManagementHook, kind: KindName, process_id: str, reason: str
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


@contextlib.contextmanager
def waiting_on(task: Any, kind: KindName, process_id: str) -> Iterator[None]:
    """While an operator waits in the worker: its ``_waiting_on`` names the process its ``on_kill``
    terminates (:func:`terminate_when_killed`); ``None`` again once the wait is over."""
    task._waiting_on = (kind, process_id)
    try:
        yield
    finally:
        task._waiting_on = None


def terminate_when_killed(
    task: BaseOperator, hook: EdcManagementHook, waiting_on: tuple[KindName, str] | None, enabled: bool
) -> None:
    """An operator's ``on_kill`` while it waits in the worker: terminate the process it waits for (``kind``,
    id) when ``enabled`` (its ``terminate_on_kill``); nothing when it waits for none. Never raises."""
    if waiting_on is None or not enabled:
        return
    kind, process_id = waiting_on
    terminate_process(task.log, hook, kind, process_id, f"Airflow task {task.task_id} was killed")


def _state(hook: EdcManagementHook, kind: KindName, process_id: str) -> str | None:
    """The process's state on the connector (``GET .../transferprocesses/{id}/state``, or the negotiation),
    or ``None`` when it cannot be read."""
    try:
        if kind == "transfer":
            return hook.get_transfer_state(process_id).upper() or None
        return str(jsonld_get(hook.get_negotiation(process_id), "state", "")).upper() or None
    except EdcCallbacksError:
        return None


def terminate_at_timeout(task: BaseOperator, hook: EdcManagementHook, kind: KindName, result: WaitResult) -> str:
    """At a trigger's ``timeout`` event: terminate the process on the connector before the task fails.

    :returns: what became of the process, for the time-out's message (see :func:`terminate_process`).
    """
    state = result.state or "UNKNOWN"
    reason = f"Airflow task {task.task_id} timed out after {result.waited_seconds or 0.0:.0f} s in state {state}"
    if result.reason:  # a stall time-out says so
        reason = f"{reason}: {result.reason}"
    return terminate_process(task.log, hook, kind, result.process_id, reason).detail
