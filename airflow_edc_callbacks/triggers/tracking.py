"""What a waiting trigger knows of its process: the events it took, the binding, the last state.

Synchronous and free of I/O: the engine (:mod:`airflow_edc_callbacks.triggers.engine`) feeds it the
events it reads and asks it whether one ends the wait.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.models import (
    FINAL_PROCESS_STATES,
    SUSPENSION_TRANSFER_STATES,
    Outcome,
    Source,
    iso_from_epoch_ms,
    jsonld_get,
)
from airflow_edc_callbacks.store import StoredEvent
from airflow_edc_callbacks.triggers.kinds import ProcessKind
from airflow_edc_callbacks.triggers.results import TimelineEntry

_MAX_WARNINGS = 100
"""Untrusted events a trigger logs (one line each); any beyond are ignored silently."""

Finding = dict[str, Any]
"""A result's fields as the tracker found them (``status``, ``state``, ``event_type``, ``source`` and the
kind's own); the engine adds the process id, correlation id and timeline."""


def timeline_entry(stored: StoredEvent) -> TimelineEntry:
    """One event of a process's timeline: no payload, so no EDR token."""
    return TimelineEntry(
        type=stored.event_type,
        at=stored.event_at,
        received_at=stored.received_at,
        envelope_id=stored.envelope_id,
        routes=tuple(stored.routes),
    )


class ProcessTracker:
    """The events a trigger took for one process (in order, each envelope once) and its last state.

    :param kind: the process kind.
    :param process_id: the transfer process or contract negotiation id.
    :param correlation_id: the task's correlation id (the process is bound to it), or ``None`` (a sensor).
    :param log: the trigger's logger.
    """

    def __init__(
        self, kind: ProcessKind, process_id: str, correlation_id: str | None, log: logging.Logger | Any
    ) -> None:
        self.kind = kind
        self.process_id = process_id
        self.correlation_id = correlation_id
        self.log = log
        # the correlation id the process is bound to: the task's own (it started the process) until the
        # store says otherwise; a sensor's is unknown until read from the store
        self.bound: str | None = correlation_id
        self.held_back = False  # untrusted events of the unbound process are in the store (may count later)
        self.timeline: list[TimelineEntry] = []
        self._seen: set[str] = set()  # envelope ids taken
        self._warned: set[str] = set()  # envelope ids of untrusted events logged (at most _MAX_WARNINGS)
        self.last_state: str | None = None  # the process's last known non-final state...
        self.state_source: Source | None = None  # ...where it came from...
        self.state_since: float | None = None  # ...and since when (epoch seconds)
        self._stall_warned: set[str] = set()  # states the stall warning was logged for

    # -- events ----------------------------------------------------------------------------------
    def about(self, stored: StoredEvent) -> bool:
        """Whether ``stored`` is an event of this process."""
        return stored.process_id == self.process_id and stored.event_type.startswith(self.kind.event_prefix)

    def needs_binding(self, events: Iterable[StoredEvent]) -> bool:
        """Whether the binding must be read: the process is unbound and untrusted events were held back,
        or an event of this process on a dynamic token is here (it counts once the process is bound)."""
        return self.bound is None and (
            self.held_back or any(e.correlation_id is not None and not e.via_static and self.about(e) for e in events)
        )

    def take_binding(self, bound: str | None) -> None:
        """Take the process's binding as the store has it (see :meth:`StoredEvent.trusted`)."""
        if bound is None:
            return
        if self.correlation_id is not None and bound != self.correlation_id:
            self.log.error(
                "%s %s is bound to another task instance (correlation id %s): only its static callbacks count here",
                self.kind.label,
                self.process_id,
                bound,
            )
        self.bound = bound

    def consume(self, events: Iterable[StoredEvent]) -> Finding | None:
        """Take this process's trusted events in order; the wait's finding once one ends it.

        Only trusted events count (:meth:`StoredEvent.trusted`): static-route events, and those that came
        with the token of the correlation id the process is bound to. Others are logged once and held
        back in case the binding turns up later. Events are told apart by envelope id.

        An event that a later one of the same batch undoes (:attr:`ProcessKind.undone_by`: a transfer's
        ``Started`` followed by ``TransferProcessSuspended``, in a backlog read by a sensor or a retry)
        does not end the wait: the transfer is suspended now, and its resumption sends ``Started`` again.
        """
        events = list(events)
        for index, stored in enumerate(events):
            if stored.envelope_id in self._seen or not self.about(stored):
                continue
            if not stored.trusted(self.bound):
                self._warn_untrusted(stored)
                self.held_back = self.bound is None  # a binding never changes once there
                continue
            self._seen.add(stored.envelope_id)
            self.timeline.append(timeline_entry(stored))
            self.observe(self.kind.state_of(stored.event_type), Source.CALLBACK, stored.received_at)
            self.log.info(
                "Callback %s for %s %s: connector time %s, received %s (via %s)",
                stored.event_type,
                self.kind.label,
                self.process_id,
                iso_from_epoch_ms(stored.event_at),
                iso_from_epoch_ms(stored.received_at),
                ", ".join(stored.routes),
            )
            outcome = self.kind.event_outcomes.get(stored.event_type)
            if outcome is None:
                continue
            if self._undone_later(stored, events[index + 1 :]):
                self.log.info(
                    "%s %s was suspended after it started; waiting for it to be resumed",
                    self.kind.label,
                    self.process_id,
                )
                continue
            return {
                "status": outcome,
                "state": self.kind.state_of(stored.event_type),
                "event_type": stored.event_type,
                "source": Source.CALLBACK,
                **self.kind.event_details(stored.payload),
            }
        return None

    def _warn_untrusted(self, stored: StoredEvent) -> None:
        if stored.envelope_id in self._warned or len(self._warned) >= _MAX_WARNINGS:
            return
        self._warned.add(stored.envelope_id)
        self.log.warning(
            "Ignoring callback %s %s for %s %s: it came with the token of correlation id %s, "
            "not of the task instance that started it",
            stored.event_type,
            stored.envelope_id,
            self.kind.label,
            self.process_id,
            stored.correlation_id,
        )

    def _undone_later(self, stored: StoredEvent, later: list[StoredEvent]) -> bool:
        undoing = self.kind.undone_by.get(stored.event_type)
        return undoing is not None and any(
            e.event_type == undoing and self.about(e) and e.trusted(self.bound) for e in later
        )

    # -- state checks ----------------------------------------------------------------------------
    def check(self, document: dict[str, Any]) -> Finding | None:
        """Take a state check's answer (the process as the Management API returns it); the finding when
        its state ends the wait."""
        state = str(jsonld_get(document, "state", "")).upper()
        self.log.info("Connector reports %s %s in state %s", self.kind.label, self.process_id, state)
        self.observe(state, Source.STATE_CHECK, jsonld_get(document, "stateTimestamp"))
        outcome = self.kind.state_outcomes.get(state)
        if outcome is None:
            return None
        return {
            "status": outcome,
            "state": state,
            "event_type": None,
            "source": Source.STATE_CHECK,
            **self.kind.state_details(document),
        }

    # -- stalls and time-outs --------------------------------------------------------------------
    def observe(self, state: str, source: Source, at: Any = None) -> None:
        """Note the process's state as a callback or state check told it.

        :param at: when the process entered the state, epoch milliseconds (the receiver's time of the
            callback, or the connector's ``stateTimestamp``; never later than now); unknown: now. A state
            check telling the same state with a later ``stateTimestamp`` means the process entered it
            again (e.g. resumed to STARTED with its callbacks lost): the stall clock starts over.
        """
        if not state:
            return
        try:
            since = float(at) / 1000 if at is not None else time.time()
        except (TypeError, ValueError):
            since = time.time()
        since = min(since, time.time())  # a connector clock ahead of this host's does not hide a stall
        if state == self.last_state:
            self.state_source = source
            if source is Source.STATE_CHECK and at is not None and since > (self.state_since or since):
                self.state_since = since
            return
        self.last_state, self.state_source, self.state_since = state, source, since

    def warn_if_stalled(self, stall_after: float) -> None:
        """Log one warning per state the process has stayed in longer than ``stall_after`` seconds."""
        state, since = self.last_state, self.state_since
        if state is None or since is None or state in FINAL_PROCESS_STATES or state in self._stall_warned:
            return
        stalled = time.time() - since
        if stalled < stall_after:
            return
        self._stall_warned.add(state)
        metrics.incr("trigger.stall_warning")
        self.log.warning(
            "%s %s has been %s for %.0f s (more than stall_warning_after %.0f s); usual cause: %s",
            self.kind.label.capitalize(),
            self.process_id,
            state,
            stalled,
            stall_after,
            self.kind.stall_cause(state),
        )

    def stall_deadline(self, stall_timeout: float) -> float | None:
        """Epoch seconds at which the process has stayed ``stall_timeout`` seconds in its current state;
        ``None`` when that cannot end the wait: no time-out (0), no state known, a final state, or a
        suspension (someone suspended the transfer on purpose)."""
        state, since = self.last_state, self.state_since
        if stall_timeout <= 0 or state is None or since is None:
            return None
        if state in FINAL_PROCESS_STATES or state in SUSPENSION_TRANSFER_STATES:
            return None
        return since + stall_timeout

    def stalled(self, stall_timeout: float, waited: float) -> Finding:
        """The time-out's finding when the process stayed in its state longer than ``stall_timeout``
        seconds (``reason`` says so); ``waited``: seconds the task waited."""
        state = self.last_state or "UNKNOWN"
        stalled = time.time() - (self.state_since or time.time())
        metrics.incr("trigger.stall_timeout")
        self.log.error(
            "%s %s has been %s for %.0f s (more than stall_timeout %g s); giving up the wait; usual cause: %s",
            self.kind.label.capitalize(),
            self.process_id,
            state,
            stalled,
            stall_timeout,
            self.kind.stall_cause(state),
        )
        reason = f"no change from {state} for {stalled:.0f} s (stall_timeout {stall_timeout:g} s)"
        return {**self.timed_out(self.last_state, self.state_source, waited), "reason": reason}

    def timed_out(self, state: str | None, source: Source | None, waited: float) -> Finding:
        """The time-out's finding: the last state known (or ``UNKNOWN``), where it came from, the wait."""
        return {
            "status": Outcome.TIMEOUT,
            "state": state or "UNKNOWN",
            "event_type": None,
            "source": source if state is not None else None,
            "waited_seconds": round(waited, 1),
        }
