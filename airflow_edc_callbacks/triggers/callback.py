"""``EdcCallbackTrigger``: waits in the triggerer for one transfer process's terminal callback.

It reads the event store first (callbacks can arrive before the task defers, or while the triggerer
restarts), then waits on the process-wide store listener. After ``fallback_check_interval`` seconds
without any callback for the transfer it asks the connector for the state, once (EDC never re-delivers
a callback that failed); if the transfer is not finished yet it waits another interval of silence
before asking again. A result found that way says so (``source = "state_check"``). While callbacks flow
the connector is not asked.
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
from airflow_edc_callbacks.config import DEFAULT_CONN_ID, get_fallback_check_interval
from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import (
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
    :param conn_id: the ``edc`` connection, used only for the state-check fallback.
    :param fallback_check_interval: seconds without a callback before asking the connector once;
        ``None`` takes ``[edc_callbacks] fallback_check_interval`` (default 300).
    :param not_before: epoch seconds before which the event is held back. The operator sets it to the
        time of deferral plus the deferring worker's exit time (``[workers] min_heartbeat_interval`` + 1 s):
        Airflow 3.3 marks a task FAILED when its trigger fires before the worker that deferred it has
        reported (apache/airflow#71580, #72716), and a callback can arrive within a second.

    The event payload: ``status`` (``success`` | ``failed``), ``transfer_process_id``, ``state``
    (``STARTED``, ``COMPLETED``, ``TERMINATED``...), ``event_type``, ``reason`` (the connector's, for a
    failure), ``source`` (``callback`` | ``state_check``), ``asset_id``, ``contract_id``, ``timeline``
    (see :func:`timeline_entry`) and ``correlation_id``.
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
        self.hook: EdcManagementHook | None = None
        self._holding: asyncio.Future[str | None] | None = None  # the latest hold write, see _hold
        # the correlation id the process is bound to: the task's own (it started the process) until the
        # store says otherwise; a sensor's is unknown until read from the store
        self._bound: str | None = correlation_id
        self._held_back = False  # untrusted events of the unbound process are in the store (may count later)
        self._warned: set[str] = set()  # envelope ids of untrusted events logged (at most _MAX_WARNINGS)

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
        source: str,
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

    # -- the trigger -----------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event (see the class docstring) when the transfer reaches the awaited state.

        Store outages are retried every 5 s and failed state checks are logged and retried after the
        next interval, so neither fails the task; the task's ``timeout`` bounds the wait.
        """
        interval = self.fallback_check_interval
        if interval is None:
            interval = await asyncio.to_thread(get_fallback_check_interval)
        self.log.info(
            "Waiting for %s %s to be %s (callbacks; state check after %.0f s of silence)",
            self.PROCESS_LABEL,
            self.transfer_process_id,
            self.wait_for.value,
            interval,
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
            last_activity = time.monotonic()
            renew_at = time.monotonic() + HOLD_RENEW_SECONDS
            while result is None:
                if time.monotonic() >= renew_at:
                    await self._hold(store, holder)
                    renew_at = time.monotonic() + HOLD_RENEW_SECONDS
                remaining = interval - (time.monotonic() - last_activity)
                if remaining <= 0:
                    self.log.info(
                        "No callback for %s %s in %.0f s; asking the connector for its state once",
                        self.PROCESS_LABEL,
                        self.transfer_process_id,
                        interval,
                    )
                    metrics.incr("trigger.state_check")
                    try:
                        result = await self._state_check(timeline)
                    except EdcCallbacksError as err:
                        self.log.warning(
                            "State check of %s %s failed: %s", self.PROCESS_LABEL, self.transfer_process_id, err
                        )
                    last_activity = time.monotonic()
                    continue
                events = await subscription.wait(min(remaining, renew_at - time.monotonic()))
                try:
                    events = await self._with_binding(store, events)
                except EdcCallbacksError as err:  # kept back; the binding is read again with the next event
                    self.log.warning("Could not read the binding of %s: %s", self.transfer_process_id, err)
                if events:
                    before = len(timeline)
                    result = self._consume(events, seen, timeline)
                    if len(timeline) > before:
                        last_activity = time.monotonic()
                    if result is not None:  # woken by the listener: from the receiver's commit to here
                        metrics.timing("trigger.wakeup_latency", time.time() * 1000 - timeline[-1]["received_at"])
            result = await self._finish(result)
            hold = (self.not_before or 0) - time.time()
            if hold > 0:
                self.log.info("Holding the event %.1f s until the worker that deferred the task has exited", hold)
                await asyncio.sleep(hold)
            yield TriggerEvent(result)
        finally:  # also when cancelled while starting: no subscription or hold is left behind
            if subscription is not None:
                subscription.close()
            if store is not None and self._holding is not None:
                with contextlib.suppress(Exception):  # a hold left behind expires after the retention period
                    await asyncio.shield(self._holding)
                    await asyncio.shield(asyncio.to_thread(store.release, holder))
