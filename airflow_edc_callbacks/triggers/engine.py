"""The waiting engine every process trigger runs: one wait for one process, built from small pieces.

- :func:`open_store`, :func:`subscribe` and :func:`store_unavailable`: connect to the event store and
  the process-wide listener, and retry after an outage (also the skeleton of
  :class:`~airflow_edc_callbacks.triggers.events.EdcCallbackEventTrigger`);
- :class:`~airflow_edc_callbacks.triggers.hold.Hold`: the hold on the process's events that retention
  honours, with its shielded release;
- :meth:`Waiter.subscribed`: subscribe-and-hold as an async context manager (store first, then wait);
- :class:`Backoff`: the state checks after silence, at 1, 2, 4... times the interval;
- :meth:`Waiter.result`: the wait itself up to the deadline (or ``stall_timeout``), then :func:`hold_early_event`.

The process kind (:class:`~airflow_edc_callbacks.triggers.kinds.ProcessKind`) says what the events and
states mean; :class:`~airflow_edc_callbacks.triggers.tracking.ProcessTracker` keeps what is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.config import get_fallback_check_interval, get_stall_timeout, get_stall_warning_after
from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import Outcome, Source, jsonld_get
from airflow_edc_callbacks.store import EventStore, StoredEvent, Subscription, get_listener, get_store
from airflow_edc_callbacks.triggers.hold import Hold
from airflow_edc_callbacks.triggers.kinds import ProcessKind
from airflow_edc_callbacks.triggers.results import WaitResult
from airflow_edc_callbacks.triggers.tracking import Finding, ProcessTracker

Log = logging.Logger | Any

STORE_RETRY_SECONDS = 5.0
"""Seconds between attempts to reach an event store that is unavailable."""

HOLD_RENEW_SECONDS = 3600.0
"""How often a waiting trigger renews its hold on its events (retention keeps held events)."""

STALL_RECHECK_SECONDS = 30.0
"""After a failed state check at the stall time-out, seconds before the next try (a stall is never
declared without the connector confirming the state)."""

MAX_CHECK_INTERVAL = 3600.0
"""Longest silence between two state checks (seconds) once the back-off has grown (or the
``fallback_check_interval`` when that is longer)."""


# -- connect and retry -------------------------------------------------------------------------------
async def open_store() -> EventStore:
    """The process-wide event store (waits for its schema).

    :raises EdcCallbacksError: the store cannot be reached.
    """
    return await asyncio.to_thread(get_store, waiting=True)


async def subscribe(store: EventStore, **filters: Any) -> Subscription:
    """Start the store's listener (once per process) and subscribe to the events ``filters`` select
    (see :meth:`~airflow_edc_callbacks.store.listener.StoreListener.subscribe`).

    :raises EdcCallbacksError: the store cannot be reached.
    """
    listener = await asyncio.to_thread(get_listener(store).start)
    return listener.subscribe(**filters)


async def store_unavailable(log: Log, err: Exception, subscription: Subscription | None) -> None:
    """After a store outage: log it, close the subscription (if any), wait :data:`STORE_RETRY_SECONDS`;
    the caller connects again."""
    log.warning("Callback event store unavailable (%s); retrying", err)
    if subscription is not None:
        subscription.close()
    await asyncio.sleep(STORE_RETRY_SECONDS)


# -- small pieces of the wait ---------------------------------------------------------------------
class Backoff:
    """When to ask the connector: after ``interval`` seconds of silence, then after 2x, 4x... that, at most
    ``max(interval, MAX_CHECK_INTERVAL)``; a callback starts the sequence anew (:meth:`reset`)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.every = interval  # the silence before the next state check
        self.next = time.monotonic() + interval

    def due(self) -> bool:
        """Whether a state check is due now."""
        return time.monotonic() >= self.next

    def check_now(self) -> None:
        """Make a state check due now (without changing the back-off)."""
        self.next = time.monotonic()

    def checked(self) -> None:
        """A state check was made: the next one after twice the silence, up to the cap."""
        self.every = min(self.every * 2, max(self.interval, MAX_CHECK_INTERVAL))
        self.next = time.monotonic() + self.every

    def reset(self) -> None:
        """A callback came: the next check after ``interval`` of silence again."""
        self.every = self.interval
        self.next = time.monotonic() + self.interval

    def seconds_left(self) -> float:
        """Seconds until the next state check."""
        return self.next - time.monotonic()


async def hold_early_event(not_before: float | None, log: Log) -> None:
    """Hold the event until ``not_before`` (epoch seconds): Airflow 3.3 marks a task FAILED when its
    trigger fires before the worker that deferred it has reported (apache/airflow#71580, #72716)."""
    hold = (not_before or 0) - time.time()
    if hold > 0:
        log.info("Holding the event %.1f s until the worker that deferred the task has exited", hold)
        await asyncio.sleep(hold)


# -- the waiter -------------------------------------------------------------------------------------
class Waiter:
    """One wait for one process: ``async with waiter.subscribed(): payload = await waiter.result()``.

    :param kind: what the process's events and states mean.
    :param process_id: the transfer process or contract negotiation id.
    :param correlation_id: the task's correlation id, or ``None`` (a sensor).
    :param log: the trigger's logger.
    :param hook: gives the connection's hook (state checks, reasons).
    :param fallback_check_interval: seconds of silence before the first state check; ``None``: the config.
    :param deadline: epoch seconds at which the wait ends with a time-out; ``None``: none.
    :param waiting_since: epoch seconds the wait (a time-out's) is counted from; ``None``: now.
    :param not_before: epoch seconds before which the result is held back (:func:`hold_early_event`).
    :param stall_timeout: seconds in one state that end the wait (see :meth:`_at_stall`); 0: never;
        ``None``: ``[edc_callbacks] stall_timeout``.
    """

    def __init__(
        self,
        kind: ProcessKind,
        process_id: str,
        correlation_id: str | None,
        *,
        log: Log,
        hook: Callable[[], EdcManagementHook],
        fallback_check_interval: float | None,
        deadline: float | None,
        waiting_since: float | None,
        not_before: float | None,
        stall_timeout: float | None = None,
    ) -> None:
        self.kind = kind
        self.process_id = process_id
        self.correlation_id = correlation_id
        self.log = log
        self.hook = hook
        self.fallback_check_interval = fallback_check_interval
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.not_before = not_before
        self.tracker = ProcessTracker(kind, process_id, correlation_id, log)
        self._hold = Hold(process_id, correlation_id, log)
        self._store: EventStore | None = None
        self._subscription: Subscription | None = None
        self._found: Finding | None = None  # what the first read of the store found
        self._interval = 0.0
        self._stall_after = 0.0
        self._stall_timeout = stall_timeout
        self._stall_recheck_at = 0.0  # epoch seconds: after a failed check at the stall time-out
        self._checked_at = float("-inf")  # monotonic time of the last answered state check
        self._started = 0.0

    @contextlib.asynccontextmanager
    async def subscribed(self) -> AsyncIterator[None]:
        """Subscribe to the process's events, hold them and read the store (events stored before the
        subscription count); store outages are retried every :data:`STORE_RETRY_SECONDS`. On exit (also
        when cancelled while starting) the subscription is closed and the hold released, shielded."""
        interval = self.fallback_check_interval
        self._interval = interval if interval is not None else await asyncio.to_thread(get_fallback_check_interval)
        self._stall_after = await asyncio.to_thread(get_stall_warning_after)
        if self._stall_timeout is None:
            self._stall_timeout = await asyncio.to_thread(get_stall_timeout)
        self._started = self.waiting_since or time.time()
        self.log.info(
            "Waiting for %s %s to be %s (callbacks; state check after %.0f s of silence%s)",
            self.kind.label,
            self.process_id,
            self.kind.awaited,
            self._interval,
            f"; time-out in {self.deadline - time.time():.0f} s" if self.deadline else "",
        )
        try:
            while self._subscription is None:
                try:
                    self._store = await open_store()
                    self._subscription = await subscribe(
                        self._store, correlation_id=self.correlation_id, process_ids=[self.process_id]
                    )
                    self.tracker.take_binding(await self._hold.renew(self._store, bind=True))
                    self._found = self.tracker.consume(await self._with_binding(await self._read()))
                except EdcCallbacksError as err:
                    await store_unavailable(self.log, err, self._subscription)
                    self._subscription = None
            yield
        finally:
            if self._subscription is not None:
                self._subscription.close()
            await self._hold.release()

    async def result(self) -> dict[str, Any]:
        """Wait (inside :meth:`subscribed`) until the process reaches the awaited state, fails, the deadline
        passes, or it stalls (:meth:`_at_stall`); the trigger event's payload (:meth:`WaitResult.to_payload`).

        Failed state checks are logged and retried after the next interval, so they never fail the wait.
        """
        if self._store is None or self._subscription is None:
            raise RuntimeError("Waiter.result() runs inside Waiter.subscribed()")
        store, subscription, tracker = self._store, self._subscription, self.tracker
        found = self._found
        backoff = Backoff(self._interval)
        renew_at = time.monotonic() + HOLD_RENEW_SECONDS
        probed = False  # one early state check when the stall threshold passes with no state known
        while found is None:
            if time.monotonic() >= renew_at:
                tracker.take_binding(await self._hold.renew(store))
                renew_at = time.monotonic() + HOLD_RENEW_SECONDS
            if self.deadline is not None and time.time() >= self.deadline:
                found = await self._at_deadline(subscription)
                break
            stalled_at = tracker.stall_deadline(self._stall_timeout or 0.0)
            if stalled_at is not None:
                stalled_at = max(stalled_at, self._stall_recheck_at)
                if time.time() >= stalled_at:
                    found = await self._at_stall(subscription)
                    continue  # None: the process moved after all, or the connector could not be asked
            stall_at = (tracker.state_since or self._started) + self._stall_after
            if not probed and tracker.last_state is None and time.time() >= stall_at:
                probed = True
                backoff.check_now()
            if backoff.due():
                self.log.info(
                    "No callback for %s %s in %.1f s; asking the connector for its state",
                    self.kind.label,
                    self.process_id,
                    backoff.every,
                )
                metrics.incr("trigger.state_check")
                try:
                    found = await self._state_check()
                except EdcCallbacksError as err:
                    self.log.warning("State check of %s %s failed: %s", self.kind.label, self.process_id, err)
                if found is None:
                    tracker.warn_if_stalled(self._stall_after)
                backoff.checked()
                continue
            tracker.warn_if_stalled(self._stall_after)
            wake = [backoff.seconds_left(), renew_at - time.monotonic()]
            if self.deadline is not None:
                wake.append(self.deadline - time.time())
            if time.time() < stall_at:  # as computed above: no state check since
                wake.append(stall_at - time.time())
            if stalled_at is not None:
                wake.append(stalled_at - time.time())
            events = await subscription.wait(max(min(wake), 0.0))
            try:
                events = await self._with_binding(events)
            except EdcCallbacksError as err:  # kept back; the binding is read again with the next event
                self.log.warning("Could not read the binding of %s: %s", self.process_id, err)
            if events:
                before = len(tracker.timeline)
                found = tracker.consume(events)
                if len(tracker.timeline) > before:  # a callback: the state checks start over
                    backoff.reset()
                if found is not None:  # woken by the listener: from the receiver's commit to here
                    metrics.timing("trigger.wakeup_latency", time.time() * 1000 - tracker.timeline[-1].received_at)
        result = await self._finish(found)
        await hold_early_event(self.not_before, self.log)
        return result.to_payload()

    # -- reads -----------------------------------------------------------------------------------
    async def _read(self) -> list[StoredEvent]:
        """The store's events of this process (and of this task's correlation id)."""
        store = get_store(waiting=True)
        return await asyncio.to_thread(store.events, correlation_id=self.correlation_id, process_id=self.process_id)

    async def _with_binding(self, events: list[StoredEvent]) -> list[StoredEvent]:
        """Events to consume: ``events``, preceded by the process's stored events (read again: nothing of
        them is kept in memory) when its binding turned up since events were held back as untrusted
        (callbacks can be stored before the hook binds the process)."""
        if self._store is not None and self.tracker.needs_binding(events):
            self.tracker.bound = await asyncio.to_thread(self._store.binding, self.process_id)
            if self.tracker.bound is not None and self.tracker.held_back:
                self.tracker.held_back = False
                events = [*await self._read(), *events]
        return events

    async def _state_check(self) -> Finding | None:
        """One ``GET`` of the process on the connector (:attr:`ProcessKind.read`).

        :raises EdcCallbacksError: the connector could not be asked.
        """
        found = self.tracker.check(await self.kind.read(self.hook(), self.process_id))
        self._checked_at = time.monotonic()
        return found

    # -- the deadline ----------------------------------------------------------------------------
    async def _at_deadline(self, subscription: Subscription) -> Finding:
        """At the deadline: a callback committed just before it still counts (the listener's queue and the
        store are read once more); then one state check, which may find the process finished after all
        (EDC never re-delivers a callback that failed); else a time-out naming the last state."""
        found = await self._catch_up(subscription, "time-out")
        if found is not None:
            return found
        state, source = self.tracker.last_state, self.tracker.state_source
        metrics.incr("trigger.state_check")
        try:
            found = await self._state_check()
        except EdcCallbacksError as err:
            self.log.warning("State check of %s %s at the time-out failed: %s", self.kind.label, self.process_id, err)
        else:
            if found is not None:
                return found
            state, source = self.tracker.last_state, Source.STATE_CHECK
        waited = time.time() - self._started
        self.log.error(
            "%s %s did not reach the awaited state within the time-out (%.0f s); last state %s (from %s)",
            self.kind.label.capitalize(),
            self.process_id,
            waited,
            state or "UNKNOWN",
            source.value if source else "nowhere: no callback came and the state check failed",
        )
        return self.tracker.timed_out(state, source, waited)

    async def _catch_up(self, subscription: Subscription, moment: str) -> Finding | None:
        """Consume what came just before ``moment`` (the listener's queue, the store read once more)."""
        queued = subscription.drain()
        try:
            return self.tracker.consume(await self._with_binding([*queued, *await self._read()]))
        except EdcCallbacksError as err:
            self.log.warning("Could not read the stored events of %s at the %s: %s", self.process_id, moment, err)
            return self.tracker.consume(queued)

    async def _at_stall(self, subscription: Subscription) -> Finding | None:
        """Past ``stall_timeout`` in one state: events that came just before count; then one state check
        (unless one was answered in the last second; callbacks may have been lost) ends the wait with its
        result, or lets it go on when the process moved; a failed check is tried again after
        :data:`STALL_RECHECK_SECONDS`. Else the stall time-out."""
        before = (self.tracker.last_state, self.tracker.state_since)
        found = await self._catch_up(subscription, "stall time-out")
        if found is not None or (self.tracker.last_state, self.tracker.state_since) != before:
            return found
        if time.monotonic() - self._checked_at > 1.0:
            metrics.incr("trigger.state_check")
            try:
                found = await self._state_check()
            except EdcCallbacksError as err:
                self.log.warning("State check of stalled %s %s failed: %s", self.kind.label, self.process_id, err)
                self._stall_recheck_at = time.time() + STALL_RECHECK_SECONDS
                return None
            if found is not None or (self.tracker.last_state, self.tracker.state_since) != before:
                return found
        return self.tracker.stalled(self._stall_timeout or 0.0, time.time() - self._started)

    async def _finish(self, found: Finding) -> WaitResult:
        """The typed result; for a kind whose failure callback has no reason, ``errorDetail`` read once."""
        if self.kind.reason_from_connector and found["status"] is Outcome.FAILED and not found.get("reason"):
            try:
                document = await self.kind.read(self.hook(), self.process_id)
            except Exception as err:  # the reason is a courtesy; the failure stands without it
                self.log.warning("Could not read the reason of %s %s: %s", self.kind.label, self.process_id, err)
            else:
                reason = jsonld_get(document, "errorDetail")
                found = {**found, "reason": reason if isinstance(reason, str) else None}
        return self.kind.result.model_validate(
            {
                self.kind.result.ID_FIELD: self.process_id,
                "correlation_id": self.correlation_id,
                "timeline": tuple(self.tracker.timeline),
                **found,
            }
        )
