"""The process-wide listener that wakes waiting triggers when the store receives events.

One listener per process and store holds ONE database connection, however many triggers wait. It
checks for changes (SQLite: ``PRAGMA data_version``, which changes when another connection commits; a
query of nothing but an integer), fetches only the rows stored since its cursor, and hands each row to
the subscriptions whose correlation id or process id it matches. No query runs per waiting trigger.

Ordering argument (why no event is lost): the listener fetches and dispatches under a lock that
:meth:`StoreListener.subscribe` also takes. A subscriber subscribes first and reads the store after
that. An event committed before that read is in the read; one committed after it has a ``seq`` above
the listener's cursor at subscription time (SQLite serialises writes, so ``seq`` follows commit order),
so the listener's next fetch dispatches it to the subscription. Duplicates between the two paths are
dropped by the subscriber on ``seq``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Iterable

from sqlalchemy import select, text

from airflow_edc_callbacks.store.repository import EventStore, StoredEvent, get_store
from airflow_edc_callbacks.store.tables import CallbackEventRow

log = logging.getLogger(__name__)

__all__ = ["StoreListener", "Subscription", "get_listener"]

DEFAULT_POLL_INTERVAL = 0.05
"""Seconds between two change checks (one ``PRAGMA data_version`` on one connection)."""


class Subscription:
    """Events for one correlation id and/or process id, delivered by the listener to an asyncio loop."""

    def __init__(
        self,
        listener: StoreListener,
        correlation_id: str | None,
        process_ids: Iterable[str],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.listener = listener
        self.correlation_id = correlation_id
        self.process_ids = set(process_ids)
        self._loop = loop
        self._queue: deque[StoredEvent] = deque()
        self._ready = asyncio.Event()
        self.closed = False

    def _deliver(self, stored: StoredEvent) -> None:
        """Called on the listener thread."""
        self._queue.append(stored)
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self.close()

    def add_process_id(self, process_id: str) -> None:
        """Also receive events of ``process_id`` (for example once the transfer id is known)."""
        self.listener._index(self, [process_id])

    def drain(self) -> list[StoredEvent]:
        """Take the events delivered so far, oldest first."""
        items: list[StoredEvent] = []
        while self._queue:
            items.append(self._queue.popleft())
        return items

    async def wait(self, timeout: float | None) -> list[StoredEvent]:
        """Wait up to ``timeout`` seconds (``None``: forever) for events; returns them, or ``[]``."""
        if not self._queue:
            self._ready.clear()
            if not self._queue:
                try:
                    await asyncio.wait_for(self._ready.wait(), timeout)
                except asyncio.TimeoutError:
                    return []
        return self.drain()

    def close(self) -> None:
        """Stop receiving events."""
        if not self.closed:
            self.closed = True
            self.listener._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreListener:
    """Watches one :class:`EventStore` on a daemon thread with one connection of its own.

    :param store: the store to watch.
    :param poll_interval: seconds between change checks.
    """

    def __init__(self, store: EventStore, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._lock = threading.RLock()  # re-entered when a closed loop unsubscribes during dispatch
        self._by_correlation: dict[str, set[Subscription]] = {}
        self._by_process: dict[str, set[Subscription]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor = 0
        self.wakeups = 0

    # -- subscriptions -------------------------------------------------------------------------
    def subscribe(self, *, correlation_id: str | None = None, process_ids: Iterable[str] = ()) -> Subscription:
        """Register interest; call from inside the running asyncio loop that will wait on it.

        Read the store for earlier events AFTER subscribing (see the module docstring).
        """
        self._ensure_started()
        sub = Subscription(self, correlation_id, (), asyncio.get_running_loop())
        with self._lock:
            if correlation_id is not None:
                self._by_correlation.setdefault(correlation_id, set()).add(sub)
        self._index(sub, process_ids)
        return sub

    def _index(self, sub: Subscription, process_ids: Iterable[str]) -> None:
        with self._lock:
            for pid in process_ids:
                sub.process_ids.add(pid)
                self._by_process.setdefault(pid, set()).add(sub)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub.correlation_id is not None:
                self._discard(self._by_correlation, sub.correlation_id, sub)
            for pid in sub.process_ids:
                self._discard(self._by_process, pid, sub)

    @staticmethod
    def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    @property
    def subscription_count(self) -> int:
        """How many subscriptions are registered."""
        with self._lock:
            return len({s for subs in (*self._by_correlation.values(), *self._by_process.values()) for s in subs})

    # -- the watching thread -------------------------------------------------------------------
    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._cursor = self.store.max_seq()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="edc-callbacks-listener", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (used by tests and at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        last_version: int | None = None
        connection = None
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                if self.store.is_sqlite:
                    version = int(connection.execute(text("PRAGMA data_version")).scalar_one())
                    changed = version != last_version
                    last_version = version
                else:
                    changed = True
                if changed:
                    self._fetch_and_dispatch(connection)
            except Exception:  # keep listening through database hiccups
                log.exception("Callback event listener failed; reconnecting")
                if connection is not None:
                    connection.close()
                connection = None
                last_version = None
            self._stop.wait(self.poll_interval)
        if connection is not None:
            connection.close()

    def _fetch_and_dispatch(self, connection: object) -> None:
        with self._lock:
            rows = connection.execute(  # type: ignore[attr-defined]
                select(CallbackEventRow.__table__)
                .where(CallbackEventRow.seq > self._cursor)
                .order_by(CallbackEventRow.seq)
            ).all()
            for row in rows:
                stored = StoredEvent.from_row(row)
                self._cursor = max(self._cursor, stored.seq)
                targets: set[Subscription] = set()
                if stored.correlation_id is not None:
                    targets |= self._by_correlation.get(stored.correlation_id, set())
                if stored.process_id is not None:
                    targets |= self._by_process.get(stored.process_id, set())
                for sub in targets:
                    self.wakeups += 1
                    sub._deliver(stored)


_listeners: dict[tuple[int, str], StoreListener] = {}
_listeners_lock = threading.Lock()


def get_listener(store: EventStore | None = None) -> StoreListener:
    """The process-wide listener of ``store`` (default: the configured store); re-created after a fork."""
    store = store or get_store()
    key = (os.getpid(), store.url)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = StoreListener(store)
        return listener
