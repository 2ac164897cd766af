"""What every process trigger's ``run`` and ``on_kill`` do, written once: the transfer trigger and the
negotiation trigger are shells that name their process and kind, and call these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from airflow.triggers.base import TriggerEvent

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.triggers.engine import Waiter
from airflow_edc_callbacks.triggers.kill import kill, prepare_kill
from airflow_edc_callbacks.triggers.kinds import ProcessKind


class ProcessTrigger(Protocol):
    """The attributes the transfer and negotiation triggers share (see their docstrings)."""

    kind: ProcessKind
    correlation_id: str | None
    conn_id: str
    fallback_check_interval: float | None
    stall_timeout: float | None
    deadline: float | None
    waiting_since: float | None
    not_before: float | None
    terminate_on_kill: bool
    _fired: bool

    @property
    def log(self) -> Any: ...

    def _hook(self) -> EdcManagementHook: ...


async def run_until_final(trigger: ProcessTrigger, process_id: str) -> AsyncIterator[TriggerEvent]:
    """Wait through the engine (:class:`~airflow_edc_callbacks.triggers.engine.Waiter`) for ``process_id``
    and yield its one event; with ``terminate_on_kill`` the connection is read first, so a kill is quick.
    Once the event is yielded, a cancel is the triggerer dropping a fired trigger, not a kill."""
    waiter = Waiter(
        trigger.kind,
        process_id,
        trigger.correlation_id,
        log=trigger.log,
        hook=trigger._hook,
        fallback_check_interval=trigger.fallback_check_interval,
        deadline=trigger.deadline,
        waiting_since=trigger.waiting_since,
        not_before=trigger.not_before,
        stall_timeout=trigger.stall_timeout,
    )
    async with waiter.subscribed():
        if trigger.terminate_on_kill:
            await prepare_kill(trigger.log, trigger._hook(), trigger.conn_id)
        payload = await waiter.result()
        trigger._fired = True
        yield TriggerEvent(payload)


async def kill_unless_fired(trigger: ProcessTrigger, process_id: str) -> None:
    """A user marked the deferred task failed or success, or cleared it: terminate ``process_id`` when
    ``terminate_on_kill`` is set (see :func:`~airflow_edc_callbacks.triggers.kill.kill`); never after the
    event was sent (Airflow 3.3 cancels a fired trigger that is still closing as if a user acted: the
    task resumes on the event). Best effort: a failure is logged, never raised."""
    if not trigger.terminate_on_kill:
        return
    if trigger._fired:
        trigger.log.info("on_kill after the event was sent: not terminating %s", process_id)
        return
    await kill(
        trigger.log,
        getattr(trigger, "task_instance", None),
        f"{trigger.kind.label} {process_id}",
        lambda reason: trigger.kind.terminate(trigger._hook(), process_id, reason),
    )
