"""``EdcCallbackTrigger``: waits in the triggerer for one transfer process's terminal callback.

It reads the event store first (callbacks can arrive before the task defers, or while the triggerer
restarts), then waits on the process-wide store listener. After ``fallback_check_interval`` seconds
without any callback for the transfer it asks the connector for the state (EDC never re-delivers a
callback that failed); while the transfer stays unfinished and silent it asks again after 2, 4, 8...
times the interval (at most :data:`MAX_CHECK_INTERVAL`), and a callback starts the sequence anew. A
result found that way says so (``source = "state_check"``). While callbacks flow the connector is not
asked.

Time-outs, stalls and kills (EDC facts: a consumer whose provider never answers stays ``REQUESTED`` for
good, sovity/edc-ce#688, eclipse-edc/Connector#5139; a negotiation can stay ``VERIFIED`` when the
provider's finalization fails, MinimumViableDataspace#200):

- at ``deadline`` the trigger yields a ``timeout`` event naming the last state (of the last callback,
  or of one state check then) and how long it waited; the task raises a typed error;
- a process that stays in one non-terminal state longer than ``[edc_callbacks] stall_warning_after``
  gets one warning naming the state and its usual cause;
- :meth:`EdcCallbackTrigger.on_kill` (Airflow 3.3 calls it when a user marks the deferred task failed
  or success, or clears it) terminates the process when ``terminate_on_kill`` is set, unless the task
  instance is still deferred (the trigger moved to another triggerer, apache/airflow PR #73454).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.config import DEFAULT_CONN_ID, get_fallback_check_interval, get_stall_warning_after
from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import (
    FINAL_PROCESS_STATES,
    TRANSFER_EVENT_PREFIX,
    TransferEventType,
    WaitFor,
    iso_from_epoch_ms,
    jsonld_get,
    state_outcome,
    terminal_outcome,
)
from airflow_edc_callbacks.store import EventStore, StoredEvent, get_listener, get_store

__all__ = ["EdcCallbackTrigger"]

_STORE_RETRY_SECONDS = 5.0

_MAX_WARNINGS = 100
"""Untrusted events a trigger logs (one line each); any beyond are ignored silently."""

HOLD_RENEW_SECONDS = 3600.0
"""How often a waiting trigger renews its hold on its events (retention keeps held events)."""

MAX_CHECK_INTERVAL = 3600.0
"""Longest silence between two state checks (seconds) once the back-off has grown (or the
``fallback_check_interval`` when that is longer)."""

UNKNOWN_STATE = "UNKNOWN"
"""The state a time-out names when no callback came and the state check at the time-out failed."""

TRANSFER_STALL_CAUSES = {
    "INITIAL": "the connector has not sent the transfer request yet (is its state machine running?)",
    "INITIATED": "the connector has not sent the transfer request yet (is its state machine running?)",
    "REQUESTING": "the provider did not answer (provider down or unreachable, no data plane for the transfer "
    "type, or a termination message that was lost)",
    "REQUESTED": "the provider did not answer (no data plane for the transfer type, provider down, or a "
    "termination message that was lost)",
    "SUSPENDED": "the transfer was suspended and nobody resumed it",
}
"""Usual causes of a transfer process that stays in a state (the stall warning)."""

NEGOTIATION_STALL_CAUSES = {
    "INITIAL": "the connector has not sent the contract request yet (is its state machine running?)",
    "REQUESTING": "the provider did not answer the contract request (provider down or unreachable)",
    "REQUESTED": "the provider did not answer the contract request (provider down, or its answer was lost)",
    "AGREED": "the consumer has not verified the agreement yet (is its state machine running?)",
    "VERIFYING": "the provider did not acknowledge the verification (provider down or unreachable)",
    "VERIFIED": "no finalization came from the provider (its finalization failed or was lost)",
}
"""Usual causes of a contract negotiation that stays in a state (the stall warning)."""

KILL_TIMEOUT_SECONDS = 120.0
"""Longest an ``on_kill`` terminate may take (the task instance's state, then the terminate request).
Airflow's ``[triggerer] on_kill_timeout`` (30 s) stops waiting for ``on_kill`` earlier; the terminate,
shielded in a task of its own, carries on until this bound."""

PREPARE_KILL_TIMEOUT_SECONDS = 10.0
"""Longest a trigger spends reading its connection before it waits (so a hanging secrets backend cannot
hold the wait, nor its deadline)."""

_KILLS: set[asyncio.Task[Any]] = set()
"""Terminates started by ``on_kill`` still running (a strong reference keeps each alive)."""


def timeline_entry(stored: StoredEvent) -> dict[str, Any]:
    """One event of a transfer's timeline as it goes to XCom: no payload, so no EDR token.

    ``at`` and ``received_at`` are epoch milliseconds (connector clock, receiver clock).
    """
    return {
        "type": stored.event_type,
        "at": stored.event_at,
        "received_at": stored.received_at,
        "envelope_id": stored.envelope_id,
        "routes": list(stored.routes),
    }


class EdcCallbackTrigger(BaseTrigger):
    """Fire when the transfer process reaches the state a task waits for, as told by its callbacks.

    Its kwargs hold no secret: the store URL and the connector's API key are resolved in the triggerer.

    :param correlation_id: the correlation id in the callback token the operator sent (the trigger binds
        the process to it); ``None`` for a transfer started elsewhere (a sensor), followed on static-route
        events and on events with the token of the correlation id the process is bound to, if any.
    :param transfer_process_id: the consumer's transfer process id.
    :param wait_for: ``started`` or ``completed`` (see :class:`~airflow_edc_callbacks.models.WaitFor`).
    :param conn_id: the ``edc`` connection, for the state checks and the terminate of :meth:`on_kill`.
    :param fallback_check_interval: seconds without a callback before asking the connector (then after 2x,
        4x... that, at most :data:`MAX_CHECK_INTERVAL`);
        ``None`` takes ``[edc_callbacks] fallback_check_interval`` (default 300).
    :param not_before: epoch seconds before which the event is held back. The operator sets it to the
        time of deferral plus the deferring worker's exit time (``[workers] min_heartbeat_interval`` + 1 s):
        Airflow 3.3 marks a task FAILED when its trigger fires before the worker that deferred it has
        reported (apache/airflow#71580, #72716), and a callback can arrive within a second.
    :param deadline: epoch seconds after which the trigger stops waiting and yields a ``timeout`` event
        (kept in the serialized kwargs: a triggerer restart keeps it); ``None``: no deadline of its own.
    :param waiting_since: epoch seconds when the task started waiting (the time-out's wait is counted
        from it); ``None``: when this trigger started.
    :param terminate_on_kill: on a user's kill (:meth:`on_kill`), terminate the process on the connector
        (operators that started it set it; a sensor's trigger never does).

    The event payload: ``status`` (``success`` | ``failed`` | ``timeout``), ``transfer_process_id``,
    ``state`` (``STARTED``, ``COMPLETED``, ``TERMINATED``...; for a time-out the last state known, or
    ``UNKNOWN``), ``event_type``, ``reason`` (the connector's, for a failure), ``source`` (``callback`` |
    ``state_check``; for a time-out where its state came from, ``None`` when unknown), ``asset_id``,
    ``contract_id``, ``timeline`` (see :func:`timeline_entry`), ``correlation_id`` and, for a time-out,
    ``waited_seconds``.
    """

    EVENT_PREFIX = TRANSFER_EVENT_PREFIX
    PROCESS_LABEL = "transfer process"

    def __init__(
        self,
        *,
        correlation_id: str | None,
        transfer_process_id: str,
        wait_for: str = WaitFor.COMPLETED.value,
        conn_id: str = DEFAULT_CONN_ID,
        fallback_check_interval: float | None = None,
        not_before: float | None = None,
        deadline: float | None = None,
        waiting_since: float | None = None,
        terminate_on_kill: bool = False,
    ) -> None:
        super().__init__()
        if not transfer_process_id:
            raise ValueError("transfer_process_id must not be empty")
        self.correlation_id = correlation_id
        self.transfer_process_id = transfer_process_id
        self.wait_for = WaitFor(wait_for)
        if self.wait_for is WaitFor.AUTO:
            raise ValueError("wait_for must be resolved to 'started' or 'completed' before deferring")
        self.conn_id = conn_id
        if fallback_check_interval is not None and fallback_check_interval <= 0:
            raise ValueError(f"fallback_check_interval must be positive seconds, got {fallback_check_interval}")
        self.fallback_check_interval = fallback_check_interval
        self.not_before = not_before
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.terminate_on_kill = terminate_on_kill
        self.hook: EdcManagementHook | None = None
        self._holding: asyncio.Future[str | None] | None = None  # the latest hold write, see _hold
        # the correlation id the process is bound to: the task's own (it started the process) until the
        # store says otherwise; a sensor's is unknown until read from the store
        self._bound: str | None = correlation_id
        self._held_back = False  # untrusted events of the unbound process are in the store (may count later)
        self._warned: set[str] = set()  # envelope ids of untrusted events logged (at most _MAX_WARNINGS)
        self._last_state: str | None = None  # the process's last known non-final state...
        self._state_source: str | None = None  # ...where it came from (callback | state_check)...
        self._state_since: float | None = None  # ...and since when (epoch seconds)
        self._stall_warned: set[str] = set()  # states the stall warning was logged for
        self._fired = False  # the trigger yielded its event (on_kill then changes nothing)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger",
            {
                "correlation_id": self.correlation_id,
                "transfer_process_id": self.transfer_process_id,
                "wait_for": self.wait_for.value,
                "conn_id": self.conn_id,
                "fallback_check_interval": self.fallback_check_interval,
                "not_before": self.not_before,
                "deadline": self.deadline,
                "waiting_since": self.waiting_since,
                "terminate_on_kill": self.terminate_on_kill,
            },
        )

    # -- helpers ---------------------------------------------------------------------------------
    def _hook(self) -> EdcManagementHook:
        """The connection's hook, made once (state checks, reasons)."""
        self.hook = self.hook or EdcManagementHook(self.conn_id)
        return self.hook

    def _about_this_process(self, stored: StoredEvent) -> bool:
        return stored.process_id == self.transfer_process_id and stored.event_type.startswith(self.EVENT_PREFIX)

    def _may_become_trusted(self, stored: StoredEvent) -> bool:
        """An event of this process on a dynamic token: it counts once its process is bound to that token."""
        return stored.correlation_id is not None and not stored.via_static and self._about_this_process(stored)

    def _take_binding(self, bound: str | None) -> None:
        """Take the process's binding as the store has it (see :meth:`StoredEvent.trusted`)."""
        if bound is None:
            return
        if self.correlation_id is not None and bound != self.correlation_id:
            self.log.error(
                "%s %s is bound to another task instance (correlation id %s): only its static callbacks count here",
                self.PROCESS_LABEL,
                self.transfer_process_id,
                bound,
            )
        self._bound = bound

    async def _with_binding(self, store: EventStore, events: list[StoredEvent]) -> list[StoredEvent]:
        """Events to consume: ``events``, preceded by the process's stored events (read again: nothing of
        them is kept in memory) when its binding turned up since events were held back as untrusted
        (callbacks can be stored before the hook binds the process)."""
        if self._bound is None and (self._held_back or any(self._may_become_trusted(e) for e in events)):
            self._bound = await asyncio.to_thread(store.binding, self.transfer_process_id)
            if self._bound is not None and self._held_back:
                self._held_back = False
                events = [*await self._read_store(), *events]
        return events

    def _payload(
        self,
        *,
        status: str,
        state: str,
        event_type: str | None,
        reason: str | None,
        source: str | None,
        timeline: list[dict[str, Any]],
        asset_id: str | None,
        contract_id: str | None,
    ) -> dict[str, Any]:
        return {
            "status": status,
            "transfer_process_id": self.transfer_process_id,
            "correlation_id": self.correlation_id,
            "state": state,
            "event_type": event_type,
            "reason": reason,
            "source": source,
            "asset_id": asset_id,
            "contract_id": contract_id,
            "timeline": timeline,
        }

    async def _hold(self, store: EventStore, holder: str, *, bind: bool = False) -> None:
        """Tell retention that this trigger needs its process's events (renewed every hour); with
        ``bind`` (when it starts) also bind the process to this task's correlation id, or for a trigger
        without one (a sensor) read the binding, in the same write.

        The write runs on even if the trigger is cancelled meanwhile; ``run`` waits for it before it
        releases the hold, so a release never lands before the hold it releases.
        """
        write = asyncio.to_thread(
            store.hold, holder, process_id=self.transfer_process_id, correlation_id=self.correlation_id, bind=bind
        )
        self._holding = asyncio.ensure_future(write)
        try:
            self._take_binding(await asyncio.shield(self._holding))
        except EdcCallbacksError as err:  # retention keeps events for days: a missed renewal is harmless
            self.log.warning("Could not record this trigger's hold on its events: %s", err)

    async def _read_store(self) -> list[StoredEvent]:
        store = get_store(waiting=True)
        return await asyncio.to_thread(
            store.events, correlation_id=self.correlation_id, process_id=self.transfer_process_id
        )

    async def _state_check(self, timeline: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One ``GET /v3/transferprocesses/{id}`` (state, errorDetail, asset and contract in one request)."""
        process = await self._hook().aget_transfer_process(self.transfer_process_id)
        state = str(jsonld_get(process, "state", "")).upper()
        self.log.info("Connector reports transfer process %s in state %s", self.transfer_process_id, state)
        self._observe(state, "state_check", jsonld_get(process, "stateTimestamp"))
        outcome = state_outcome(state, self.wait_for)
        if outcome is None:
            return None
        return self._payload(
            status=outcome,
            state=state,
            event_type=None,
            reason=jsonld_get(process, "errorDetail"),
            source="state_check",
            timeline=timeline,
            asset_id=jsonld_get(process, "assetId"),
            contract_id=jsonld_get(process, "contractId"),
        )

    def _consume(
        self, events: Iterable[StoredEvent], seen: set[str], timeline: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Take this process's trusted events in order; the trigger's result once one ends the wait.

        Only trusted events count (:meth:`StoredEvent.trusted`): static-route events, and those that came
        with the token of the correlation id the process is bound to. Others are logged once and held
        back in case the binding turns up later. Events are told apart by envelope id.

        Suspended and Resumed events go into the timeline and never end the wait. A ``Started`` that a
        later ``TransferProcessSuspended`` of the same batch follows (a backlog read by a sensor or a
        retry) does not end a wait for ``started``: the transfer is suspended now, and its resumption
        sends ``TransferProcessStarted`` again.
        """
        events = list(events)
        for index, stored in enumerate(events):
            if stored.envelope_id in seen or not self._about_this_process(stored):
                continue
            if not stored.trusted(self._bound):
                if stored.envelope_id not in self._warned and len(self._warned) < _MAX_WARNINGS:
                    self._warned.add(stored.envelope_id)
                    self.log.warning(
                        "Ignoring callback %s %s for %s %s: it came with the token of correlation id %s, "
                        "not of the task instance that started it",
                        stored.event_type,
                        stored.envelope_id,
                        self.PROCESS_LABEL,
                        self.transfer_process_id,
                        stored.correlation_id,
                    )
                self._held_back = self._bound is None  # a binding never changes once there
                continue
            seen.add(stored.envelope_id)
            timeline.append(timeline_entry(stored))
            self._observe(stored.event_type[len(self.EVENT_PREFIX) :].upper(), "callback", stored.received_at)
            self.log.info(
                "Callback %s for %s %s: connector time %s, received %s (via %s)",
                stored.event_type,
                self.PROCESS_LABEL,
                self.transfer_process_id,
                iso_from_epoch_ms(stored.event_at),
                iso_from_epoch_ms(stored.received_at),
                ", ".join(stored.routes),
            )
            result = self._event_result(stored, timeline)
            if result is not None and self._suspended_later(stored, events[index + 1 :]):
                self.log.info(
                    "%s %s was suspended after it started; waiting for it to be resumed",
                    self.PROCESS_LABEL,
                    self.transfer_process_id,
                )
                result = None
            if result is not None:
                return result
        return None

    def _suspended_later(self, stored: StoredEvent, later: list[StoredEvent]) -> bool:
        """``stored`` is a ``Started`` and a trusted ``TransferProcessSuspended`` of this process follows it."""
        return stored.event_type == TransferEventType.STARTED.value and any(
            e.event_type == TransferEventType.SUSPENDED.value and self._about_this_process(e) and e.trusted(self._bound)
            for e in later
        )

    def _event_result(self, stored: StoredEvent, timeline: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The trigger's result if ``stored`` ends the wait, else ``None``."""
        outcome = terminal_outcome(stored.event_type, self.wait_for)
        if outcome is None:
            return None
        payload = stored.payload
        return self._payload(
            status=outcome,
            state=stored.event_type[len(TRANSFER_EVENT_PREFIX) :].upper(),
            event_type=stored.event_type,
            reason=payload.get("reason"),
            source="callback",
            timeline=timeline,
            asset_id=payload.get("assetId"),
            contract_id=payload.get("contractId"),
        )

    async def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Complete a result before it is yielded (subclasses add what the callback lacks)."""
        return result

    # -- time-outs, stalls, kills ----------------------------------------------------------------
    def _observe(self, state: str, source: str, at: Any = None) -> None:
        """Note the process's state as a callback or state check told it.

        :param at: when the process entered the state, epoch milliseconds (the receiver's time of the
            callback, or the connector's ``stateTimestamp``; never later than now); unknown: now.
        """
        if not state or state == self._last_state:
            if state:
                self._state_source = source
            return
        try:
            since = float(at) / 1000 if at is not None else time.time()
        except (TypeError, ValueError):
            since = time.time()
        since = min(since, time.time())  # a connector clock ahead of this host's does not hide a stall
        self._last_state, self._state_source, self._state_since = state, source, since

    def _stall_cause(self, state: str) -> str:
        """The usual cause of a transfer process that stays in ``state``."""
        if state == "STARTED" and self.wait_for is WaitFor.COMPLETED:
            return "the data plane is still copying the data, or it is stuck (PUSH: check the sink and the data plane)"
        return TRANSFER_STALL_CAUSES.get(state, "no callback and no state change came from the connector")

    def _warn_if_stalled(self, stall_after: float) -> None:
        """Log one warning per state the process has stayed in longer than ``stall_after`` seconds."""
        state, since = self._last_state, self._state_since
        if state is None or since is None or state in FINAL_PROCESS_STATES or state in self._stall_warned:
            return
        stalled = time.time() - since
        if stalled < stall_after:
            return
        self._stall_warned.add(state)
        metrics.incr("trigger.stall_warning")
        self.log.warning(
            "%s %s has been %s for %.0f s (more than stall_warning_after %.0f s); usual cause: %s",
            self.PROCESS_LABEL.capitalize(),
            self.transfer_process_id,
            state,
            stalled,
            stall_after,
            self._stall_cause(state),
        )

    def _timeout_payload(
        self, state: str, source: str | None, waited: float, timeline: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The ``timeout`` event: the process, its last state and where that came from, the wait in seconds."""
        return {
            **self._payload(
                status="timeout",
                state=state,
                event_type=None,
                reason=None,
                source=source,
                timeline=timeline,
                asset_id=None,
                contract_id=None,
            ),
            "waited_seconds": round(waited, 1),
        }

    async def _last_look(
        self, store: EventStore, queued: list[StoredEvent], seen: set[str], timeline: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """At the deadline, before timing out: the events the listener queued and the store holds that were
        not consumed yet (a callback committed just before the deadline still counts)."""
        try:
            return self._consume(await self._with_binding(store, [*queued, *await self._read_store()]), seen, timeline)
        except EdcCallbacksError as err:
            self.log.warning(
                "Could not read the stored events of %s at the time-out: %s", self.transfer_process_id, err
            )
            return self._consume(queued, seen, timeline)

    async def _timed_out(self, timeline: list[dict[str, Any]], started: float) -> dict[str, Any]:
        """The result at the deadline: one state check now, which may find the process finished after all
        (EDC never re-delivers a callback that failed: then that is the result); when the check fails, the
        last trusted callback's state."""
        state, source = self._last_state, self._state_source
        metrics.incr("trigger.state_check")
        try:
            result = await self._state_check(timeline)
        except EdcCallbacksError as err:
            self.log.warning(
                "State check of %s %s at the time-out failed: %s", self.PROCESS_LABEL, self.transfer_process_id, err
            )
        else:
            if result is not None:
                return result
            state, source = self._last_state, "state_check"
        waited = time.time() - started
        self.log.error(
            "%s %s did not reach the awaited state within the time-out (%.0f s); last state %s (from %s)",
            self.PROCESS_LABEL.capitalize(),
            self.transfer_process_id,
            waited,
            state or UNKNOWN_STATE,
            source or "nowhere: no callback came and the state check failed",
        )
        if state is None:
            source = None
        return self._timeout_payload(state or UNKNOWN_STATE, source, waited, timeline)

    async def _prepare_kill(self) -> None:
        """Make :meth:`on_kill` quicker: read the connection now (bounded), not at the kill.

        The task instance's state is not asked ahead: the triggerer's supervisor sets its in-process
        Execution API up on the first such request (seconds), and on Airflow 3.3.2 log lines its triggers
        write meanwhile reach the triggerer's own log instead of their task logs; a kill pays it instead.
        """
        try:
            await asyncio.wait_for(self._hook().aget_settings(), PREPARE_KILL_TIMEOUT_SECONDS)
        except Exception as err:  # on_kill tries again; the wait does not need the connection
            self.log.warning("Could not read connection %s (on_kill will try again): %s", self.conn_id, err)

    async def _terminate(self, reason: str) -> None:
        """``POST .../transferprocesses/{id}/terminate`` (subclasses terminate their own process).

        :raises EdcCallbacksError: the connector refused or could not be reached.
        """
        await self._hook().aterminate_transfer(self.transfer_process_id, reason)

    async def _task_instance_state(self) -> str | None:
        """The task instance's current state as the Airflow API server has it, or ``None`` (logged) when it
        cannot be read: ``RuntimeTaskInstance.get_task_states`` through the triggerer's supervisor (the
        call ``ExternalTaskTrigger`` makes), run in a thread as the triggerer's sync SDK calls need."""
        ti = getattr(self, "task_instance", None)
        if ti is None:
            self.log.warning("on_kill: this trigger has no task instance; cannot tell whether the task still waits")
            return None
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            map_index = getattr(ti, "map_index", -1)
            map_index = -1 if map_index is None else int(map_index)
            states = await asyncio.to_thread(
                RuntimeTaskInstance.get_task_states,
                dag_id=ti.dag_id,
                task_ids=[ti.task_id],
                run_ids=[ti.run_id],
                map_index=map_index,
            )
        except Exception as err:  # no supervisor (Airflow without it), API server down...
            self.log.warning("on_kill: could not read the state of task instance %s: %r", ti.task_id, err)
            return None
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
        state = (states or {}).get(ti.run_id, {}).get(key, "missing")
        return "none" if state is None else str(getattr(state, "value", state)).lower()

    async def on_kill(self) -> None:
        """A user marked the deferred task failed or success, or cleared it (Airflow 3.3 calls this then;
        not on triggerer shutdown, restart or time-out): terminate the process on the connector when
        ``terminate_on_kill`` is set. Best effort: a failure is logged, never raised.

        Airflow 3.3 also calls ``on_kill`` on a triggerer whose trigger was moved to another triggerer
        after a stall (apache/airflow PR #73454): the task instance is then still ``deferred`` and the
        process is left alone, as it is when the task instance's state cannot be read.

        The work runs in a task of its own that a cancel of ``on_kill`` does not stop: Airflow 3.3.2 sends
        the cancel of a trigger again with each state sync of the triggerer (about every second) until the
        trigger has finished, which cancels an ``on_kill`` still waiting for the API server or the connector.
        It is bounded by :data:`KILL_TIMEOUT_SECONDS`.
        """
        if not self.terminate_on_kill:
            return
        if self._fired:
            # Airflow 3.3 cancels a trigger that fired but is still closing (releasing its hold) as if a
            # user acted: the task resumes on the event, its process must not be terminated
            self.log.info("on_kill after the event was sent: not terminating %s", self.transfer_process_id)
            return
        kill = asyncio.ensure_future(self._kill())
        _KILLS.add(kill)
        kill.add_done_callback(_KILLS.discard)
        await asyncio.shield(kill)

    async def _kill(self) -> None:
        """:meth:`on_kill`'s work: the task instance's state, then the terminate (never raises)."""
        label = f"{self.PROCESS_LABEL} {self.transfer_process_id}"
        try:
            await asyncio.wait_for(self._terminate_unless_deferred(label), KILL_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            self.log.warning("on_kill: gave up terminating %s after %.0f s", label, KILL_TIMEOUT_SECONDS)
        except Exception as err:  # best effort: never into Airflow's triggerer
            self.log.warning("on_kill: could not terminate %s: %r", label, err)

    async def _terminate_unless_deferred(self, label: str) -> None:
        """Terminate the process unless the task instance still waits: its state ``deferred`` (the trigger
        moved to another triggerer) or unknown leaves the process alone; any other (``failed``,
        ``success``, ``none`` after a clear, a new try's ``scheduled`` / ``queued`` / ``running``, or
        ``missing``) terminates it. Never raises for the connector: a refused terminate is logged."""
        state = await self._task_instance_state()
        if state is None:
            self.log.warning("on_kill: not terminating %s: the task instance's state is unknown", label)
            return
        if state == "deferred":
            self.log.info(
                "on_kill: task instance is still deferred (its trigger moved to another triggerer): not terminating %s",
                label,
            )
            return
        try:
            await self._terminate(f"Airflow task instance {state} by a user action (on_kill)")
        except EdcCallbacksError as err:
            self.log.warning("on_kill: could not terminate %s: %s", label, err)
            return
        self.log.info("on_kill: asked the connector to terminate %s (task instance %s by a user action)", label, state)

    # -- the trigger -----------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event (see the class docstring) when the transfer reaches the awaited state.

        Store outages are retried every 5 s and failed state checks are logged and retried after the
        next interval, so neither fails the task; ``deadline`` bounds the wait (a ``timeout`` event).
        """
        interval = self.fallback_check_interval
        if interval is None:
            interval = await asyncio.to_thread(get_fallback_check_interval)
        stall_after = await asyncio.to_thread(get_stall_warning_after)
        started = self.waiting_since or time.time()
        self.log.info(
            "Waiting for %s %s to be %s (callbacks; state check after %.0f s of silence%s)",
            self.PROCESS_LABEL,
            self.transfer_process_id,
            self.wait_for.value,
            interval,
            f"; time-out in {self.deadline - time.time():.0f} s" if self.deadline else "",
        )
        seen: set[str] = set()
        timeline: list[dict[str, Any]] = []
        subscription = None
        result: dict[str, Any] | None = None
        holder = uuid.uuid4().hex
        store: EventStore | None = None
        try:
            while subscription is None:
                try:
                    store = await asyncio.to_thread(get_store, waiting=True)
                    listener = await asyncio.to_thread(get_listener(store).start)
                    subscription = listener.subscribe(
                        correlation_id=self.correlation_id, process_ids=[self.transfer_process_id]
                    )
                    await self._hold(store, holder, bind=True)
                    result = self._consume(await self._with_binding(store, await self._read_store()), seen, timeline)
                except EdcCallbacksError as err:
                    self.log.warning("Callback event store unavailable (%s); retrying", err)
                    if subscription is not None:
                        subscription.close()
                        subscription = None
                    await asyncio.sleep(_STORE_RETRY_SECONDS)
            assert store is not None  # set before the subscription
            if self.terminate_on_kill:
                await self._prepare_kill()
            check_every = interval  # the silence before the next state check: doubles up to the cap
            next_check = time.monotonic() + interval
            renew_at = time.monotonic() + HOLD_RENEW_SECONDS
            probed = False  # one early state check when the stall threshold passes with no state known
            while result is None:
                if time.monotonic() >= renew_at:
                    await self._hold(store, holder)
                    renew_at = time.monotonic() + HOLD_RENEW_SECONDS
                if self.deadline is not None and time.time() >= self.deadline:
                    result = await self._last_look(store, subscription.drain(), seen, timeline)
                    if result is None:
                        result = await self._timed_out(timeline, started)
                    break
                stall_at = (self._state_since or started) + stall_after
                if not probed and self._last_state is None and time.time() >= stall_at:
                    probed, next_check = True, time.monotonic()
                if time.monotonic() >= next_check:
                    self.log.info(
                        "No callback for %s %s in %.1f s; asking the connector for its state",
                        self.PROCESS_LABEL,
                        self.transfer_process_id,
                        check_every,
                    )
                    metrics.incr("trigger.state_check")
                    try:
                        result = await self._state_check(timeline)
                    except EdcCallbacksError as err:
                        self.log.warning(
                            "State check of %s %s failed: %s", self.PROCESS_LABEL, self.transfer_process_id, err
                        )
                    if result is None:
                        self._warn_if_stalled(stall_after)
                    check_every = min(check_every * 2, max(interval, MAX_CHECK_INTERVAL))
                    next_check = time.monotonic() + check_every
                    continue
                self._warn_if_stalled(stall_after)
                wake = [next_check - time.monotonic(), renew_at - time.monotonic()]
                if self.deadline is not None:
                    wake.append(self.deadline - time.time())
                if time.time() < stall_at:  # as computed above: no state check since
                    wake.append(stall_at - time.time())
                events = await subscription.wait(max(min(wake), 0.0))
                try:
                    events = await self._with_binding(store, events)
                except EdcCallbacksError as err:  # kept back; the binding is read again with the next event
                    self.log.warning("Could not read the binding of %s: %s", self.transfer_process_id, err)
                if events:
                    before = len(timeline)
                    result = self._consume(events, seen, timeline)
                    if len(timeline) > before:  # a callback: the state checks start over
                        check_every = interval
                        next_check = time.monotonic() + interval
                    if result is not None:  # woken by the listener: from the receiver's commit to here
                        metrics.timing("trigger.wakeup_latency", time.time() * 1000 - timeline[-1]["received_at"])
            result = await self._finish(result)
            hold = (self.not_before or 0) - time.time()
            if hold > 0:
                self.log.info("Holding the event %.1f s until the worker that deferred the task has exited", hold)
                await asyncio.sleep(hold)
            self._fired = True  # a cancel from now on is the triggerer dropping a fired trigger, not a kill
            yield TriggerEvent(result)
        finally:  # also when cancelled while starting: no subscription or hold is left behind
            if subscription is not None:
                subscription.close()
            if store is not None and self._holding is not None:
                with contextlib.suppress(Exception):  # a hold left behind expires after the retention period
                    await asyncio.shield(self._holding)
                    await asyncio.shield(asyncio.to_thread(store.release, holder))
