"""A process trigger's ``on_kill``: terminate the process on the connector after a user's action.

Airflow 3.3 calls a trigger's ``on_kill`` when a user marks the deferred task failed or success, or
clears it (not on triggerer shutdown, restart or time-out). It also calls it on a triggerer whose
trigger was moved to another triggerer after a stall (apache/airflow PR #73454): the task instance is
then still ``deferred`` and the process is left alone, as it is when the task instance's state cannot
be read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook

KILL_TIMEOUT_SECONDS = 120.0
"""Longest an ``on_kill`` terminate may take (the task instance's state, then the terminate request).
Airflow's ``[triggerer] on_kill_timeout`` (30 s) stops waiting for ``on_kill`` earlier; the terminate,
shielded in a task of its own, carries on until this bound."""

PREPARE_KILL_TIMEOUT_SECONDS = 10.0
"""Longest a trigger spends reading its connection before it waits (so a hanging secrets backend cannot
hold the wait, nor its deadline)."""

_KILLS: set[asyncio.Task[Any]] = set()
"""Terminates started by ``on_kill`` still running (a strong reference keeps each alive)."""


async def prepare_kill(log: Any, hook: EdcManagementHook, conn_id: str) -> None:
    """Make a later kill quicker: read the connection now (bounded), not at the kill.

    The task instance's state is not asked ahead: the triggerer's supervisor sets its in-process
    Execution API up on the first such request (seconds), and on Airflow 3.3.2 log lines its triggers
    write meanwhile reach the triggerer's own log instead of their task logs; a kill pays it instead.
    """
    try:
        await asyncio.wait_for(hook.aget_settings(), PREPARE_KILL_TIMEOUT_SECONDS)
    except Exception as err:  # on_kill tries again; the wait does not need the connection
        log.warning("Could not read connection %s (on_kill will try again): %s", conn_id, err)


async def task_instance_state(log: Any, ti: Any) -> str | None:
    """The task instance's current state as the Airflow API server has it, or ``None`` (logged) when it
    cannot be read: ``RuntimeTaskInstance.get_task_states`` through the triggerer's supervisor (the
    call ``ExternalTaskTrigger`` makes), run in a thread as the triggerer's sync SDK calls need.

    :param ti: the trigger's ``task_instance`` (``dag_id``, ``task_id``, ``run_id``, ``map_index``), or ``None``.
    """
    if ti is None:
        log.warning("on_kill: this trigger has no task instance; cannot tell whether the task still waits")
        return None
    try:
        from airflow_edc_callbacks._compat import get_task_states

        map_index = getattr(ti, "map_index", -1)
        map_index = -1 if map_index is None else int(map_index)
        states = await asyncio.to_thread(
            get_task_states,
            dag_id=ti.dag_id,
            task_ids=[ti.task_id],
            run_ids=[ti.run_id],
            map_index=map_index,
        )
    except Exception as err:  # no supervisor (Airflow without it), API server down...
        log.warning("on_kill: could not read the state of task instance %s: %r", ti.task_id, err)
        return None
    key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
    state = (states or {}).get(ti.run_id, {}).get(key, "missing")
    return "none" if state is None else str(getattr(state, "value", state)).lower()


async def kill(log: Any, ti: Any, label: str, terminate: Callable[[str], Awaitable[None]]) -> None:
    """Terminate the process named ``label`` unless its task instance still waits; best effort: a
    failure is logged, never raised.

    The work runs in a task of its own that a cancel of the caller does not stop: Airflow 3.3.2 sends
    the cancel of a trigger again with each state sync of the triggerer (about every second) until the
    trigger has finished, which cancels an ``on_kill`` still waiting for the API server or the connector.
    It is bounded by :data:`KILL_TIMEOUT_SECONDS`.

    :param ti: the trigger's task instance.
    :param terminate: the terminate call, given the reason.
    """
    work = asyncio.ensure_future(_kill(log, ti, label, terminate))
    _KILLS.add(work)
    work.add_done_callback(_KILLS.discard)
    await asyncio.shield(work)


async def _kill(log: Any, ti: Any, label: str, terminate: Callable[[str], Awaitable[None]]) -> None:
    try:
        await asyncio.wait_for(_terminate_unless_deferred(log, ti, label, terminate), KILL_TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        log.warning("on_kill: gave up terminating %s after %.0f s", label, KILL_TIMEOUT_SECONDS)
    except Exception as err:  # best effort: never into Airflow's triggerer
        log.warning("on_kill: could not terminate %s: %r", label, err)


async def _terminate_unless_deferred(
    log: Any, ti: Any, label: str, terminate: Callable[[str], Awaitable[None]]
) -> None:
    """Terminate the process unless the task instance still waits: its state ``deferred`` (the trigger
    moved to another triggerer) or unknown leaves the process alone; any other (``failed``,
    ``success``, ``none`` after a clear, a new try's ``scheduled`` / ``queued`` / ``running``, or
    ``missing``) terminates it. Never raises for the connector: a refused terminate is logged."""
    state = await task_instance_state(log, ti)
    if state is None:
        log.warning("on_kill: not terminating %s: the task instance's state is unknown", label)
        return
    if state == "deferred":
        log.info(
            "on_kill: task instance is still deferred (its trigger moved to another triggerer): not terminating %s",
            label,
        )
        return
    try:
        await terminate(f"Airflow task instance {state} by a user action (on_kill)")
    except EdcCallbacksError as err:
        log.warning("on_kill: could not terminate %s: %s", label, err)
        return
    log.info("on_kill: asked the connector to terminate %s (task instance %s by a user action)", label, state)
