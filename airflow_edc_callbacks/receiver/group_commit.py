"""Group commit: the events of concurrent callbacks stored in one transaction, each answered after its commit.

A connector sends its callbacks one after another, so a lone callback is written at once (no timer, no
wait for company). Under concurrency (many connectors, a burst after an outage) the store would otherwise
commit, and on SQLite sync the file, once per callback: here the callbacks that arrive while one commit
runs wait for it to end and are then stored together, with one transaction and one commit
(:meth:`~airflow_edc_callbacks.store.EventStore.record_many`, in a worker thread). Every callback awaits
the outcome of the commit that includes its event: nothing is answered 2xx before that commit, and a
commit that fails is every one of its callbacks' failure (the receiver answers each 503).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.store.events import MAX_GROUP, NewEvent, RecordOutcome

log = logging.getLogger(__name__)

WRITERS = 1
"""Transactions a :class:`GroupCommitter` runs at once, on either store. SQLite writes one transaction at a time
whatever the number; on PostgreSQL, measured with 32 concurrent clients on 2 cores (``benchmarks/load.py``),
one writer answered 0.61x the bare endpoint's rate against 0.52x with four and 0.53x with two: the
transactions' Python work shares the interpreter lock with the event loop, so more of them at once only
add contention, while one writer takes more events into each commit."""


class GroupCommitter:
    """Stores events for the callbacks of one event loop, in groups, with at most ``writers`` transactions at once.

    A callback that arrives while fewer than ``writers`` transactions run starts one for its event at once;
    otherwise it waits for the first of them to end, and that writer then takes every event waiting (at most
    :data:`~airflow_edc_callbacks.store.events.MAX_GROUP`) into its next transaction.

    :param store: opens (or returns) the event store; called in a worker thread for each group.
    :param writers: transactions at once (default :data:`WRITERS`). More than one lets a slow commit on
        PostgreSQL (a connection that stalls, a lock another session holds) hold back only its own group, at the
        cost of throughput; SQLite writes one transaction at a time whatever the number.
    :ivar writers: transactions at once.
    """

    def __init__(self, store: Callable[[], EventStore], writers: int = WRITERS) -> None:
        self._store = store
        self.writers = writers
        self._pending: list[tuple[NewEvent, asyncio.Future[RecordOutcome]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Events waiting for a writer (not yet in a transaction)."""
        return len(self._pending)

    async def record(self, event: NewEvent) -> bool:
        """Store ``event`` with whatever other events wait; returns once the commit that includes it is done.

        :returns: as :meth:`~airflow_edc_callbacks.store.EventStore.record`: ``True`` (stored now) or
            ``False`` (a duplicate).
        :raises Exception: what :meth:`~airflow_edc_callbacks.store.EventStore.record` raises for it
            (:class:`~airflow_edc_callbacks.exceptions.StoreUnavailableError` when its group's transaction
            failed or the store cannot be opened).
        """
        future: asyncio.Future[RecordOutcome] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if len(self._writers) < self.writers:
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)  # also when cancelled before it ran
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _write(self) -> None:
        """Commit the waiting events, a group at a time, until none waits."""
        group: list[tuple[NewEvent, asyncio.Future[RecordOutcome]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                outcomes: list[RecordOutcome]
                try:
                    outcomes = await run_in_threadpool(self._commit, [event for event, _ in group])
                except Exception as err:  # not a store fault record_many knows: each callback gets it
                    log.exception("Storing %d callback events failed", len(group))
                    outcomes = [err] * len(group)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if not future.done():  # its callback may have gone (the client disconnected)
                        future.set_result(outcome)
                group = []
        except asyncio.CancelledError:  # the app stops: no callback waits for a commit that may not come
            last = len(self._writers - {asyncio.current_task()}) == 0
            for _, future in [*group, *(self._pending if last else [])]:
                if not future.done():
                    future.set_result(StoreUnavailableError("The event store write was interrupted"))
            raise
        finally:  # now, not in a done callback: an event queued after this moment must start a writer
            self._writers.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _commit(self, events: Sequence[NewEvent]) -> list[RecordOutcome]:
        """Open the store if needed and store ``events`` in one transaction (blocking: a worker thread)."""
        try:
            store = self._store()
        except StoreUnavailableError as err:
            return [err] * len(events)
        if len(events) > 1:
            log.debug("Committing %d callback events together", len(events))
        return store.record_many(events)
