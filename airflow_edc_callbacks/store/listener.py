"""The process-wide listener that wakes waiting triggers when the store receives events.

One listener per process and store holds ONE database connection, however many triggers wait. It
checks for changes (SQLite: ``PRAGMA data_version``, which changes when another connection commits; a
query of nothing but an integer), fetches only the rows stored since its cursor, and hands each row to
the subscriptions whose correlation id or process id it matches. No query runs per waiting trigger.

Why no event is lost: a subscriber subscribes first and reads the store after that. The listener
fetches new rows, then dispatches them (under a lock) to the subscriptions registered at that moment.
A subscription registered after a fetch reads the store after it, so it sees every row that fetch saw;
rows committed after the fetch are above the cursor and come with the next fetch. Rows seen both ways
are dropped by the subscriber on ``seq``.

On SQLite writes are serialised, so ``seq`` follows commit order and a cursor on ``seq`` is exact (the
table uses AUTOINCREMENT, so purged ids are never reused).

On PostgreSQL (driver ``psycopg``, the only other one the store accepts) the listener is pushed, not
polling: the store sends ``NOTIFY edc_callback_events, '<seq>'`` in the transaction that inserts an
event, PostgreSQL delivers it on commit to every listening connection (every api-server's and
triggerer's listener), and the listener fetches exactly those rows, in whatever order their ``seq``
commit. While connected it runs no query at all. After its connection breaks (a database restart) it
reconnects, LISTENs again and re-reads every row received since
:data:`~airflow_edc_callbacks.store.events.LOOKBACK_MS` before it last heard from the database,
skipping rows it already dispatched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable

from sqlalchemy import Connection, select, text
from sqlalchemy.exc import SQLAlchemyError

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.store.events import LOOKBACK_MS, NOTIFY_CHANNEL
from airflow_edc_callbacks.store.repository import EventStore, get_store
from airflow_edc_callbacks.store.stored import StoredEvent
from airflow_edc_callbacks.store.tables import CallbackEventRow

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.05
"""Seconds between two change checks (one ``PRAGMA data_version`` on one connection)."""

_RECONNECT_WAIT = 1.0
"""Seconds between attempts to reach a database that is down."""


class Subscription:
    """Events for one correlation id and/or process ids, delivered by the listener to an asyncio loop."""

    def __init__(self, listener: StoreListener, correlation_id: str | None, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        self.correlation_id = correlation_id
        self.process_ids: set[str] = set()
        self._loop = loop
        self._queue: asyncio.Queue[StoredEvent] = asyncio.Queue()
        self.closed = False

    def _deliver(self, stored: StoredEvent) -> None:
        """Called on the listener thread."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, stored)
        except RuntimeError:  # the loop is closed: nobody waits any more
            self.close()

    def add_process_id(self, process_id: str) -> None:
        """Also receive events of ``process_id`` (for example once the transfer id is known)."""
        self.listener._index(self, [process_id])

    def drain(self) -> list[StoredEvent]:
        """Take the events delivered so far, oldest first."""
        items: list[StoredEvent] = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def wait(self, timeout: float | None) -> list[StoredEvent]:
        """Wait up to ``timeout`` seconds (``None``: forever) for events; returns them, or ``[]``."""
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return []
        return [first, *self.drain()]

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
    :param poll_interval: SQLite: seconds between change checks; PostgreSQL: a twentieth of the longest
        wait for a notification before checking whether to stop.
    """

    def __init__(self, store: EventStore, poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._lock = threading.RLock()  # re-entered when a closed loop unsubscribes during dispatch
        self._by_correlation: dict[str, set[Subscription]] = {}
        self._by_process: dict[str, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor = 0
        self._recent: dict[int, int] = {}  # seq -> received_at, PostgreSQL only
        self.wakeups = 0
        self.reconnects = 0
        self._listening: Connection | None = None
        self.uses_notify = store.is_postgresql  # the store accepts no other PostgreSQL driver than psycopg

    # -- subscriptions -------------------------------------------------------------------------
    def start(self) -> StoreListener:
        """Start watching (idempotent). Blocking: call it from a thread in async code.

        On PostgreSQL the LISTEN is in place when this returns, so no event committed afterwards can be
        missed by a subscriber that subscribes and then reads the store.

        :raises StoreUnavailableError: the store cannot be read.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._cursor = self.store.max_seq()
            if self.uses_notify:
                try:
                    self._listening = self._listen()
                except SQLAlchemyError as err:
                    raise StoreUnavailableError(f"Cannot listen for callback events: {err}") from err
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="edc-callbacks-listener", daemon=True)
            self._thread.start()
        return self

    def subscribe(
        self, *, correlation_id: str | None = None, process_ids: Iterable[str] = (), everything: bool = False
    ) -> Subscription:
        """Register interest; call from inside the running asyncio loop that will wait on it. No I/O.

        ``everything`` receives every stored event (event triggers that filter on the payload).

        Read the store for earlier events AFTER subscribing (see the module docstring).

        :raises RuntimeError: :meth:`start` was not called.
        """
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("StoreListener.start() must be called before subscribe()")
        sub = Subscription(self, correlation_id, asyncio.get_running_loop())
        with self._lock:
            if everything:
                self._everything.add(sub)
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
            self._everything.discard(sub)
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
            indexes = (*self._by_correlation.values(), *self._by_process.values(), self._everything)
            return len({s for subs in indexes for s in subs})

    # -- the watching thread -------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the thread (used by tests and at shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        if self.uses_notify:
            self._run_notified()
        else:
            self._run_polling()

    def _listen(self) -> Connection:
        connection = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql(f"LISTEN {NOTIFY_CHANNEL}")
        return connection

    def _run_notified(self) -> None:
        """PostgreSQL: LISTEN on one connection; fetch the rows each NOTIFY names."""
        connection: Connection | None = self._listening
        self._listening = None
        heard_at = time.time()  # when the database last answered: nothing committed before it was missed
        catch_up_since: int | None = None  # epoch ms: after a break, re-read from here
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = self._listen()
                    if catch_up_since is not None:
                        self.reconnects += 1
                        self._dispatch(self._fetch_since(connection, catch_up_since))
                        log.info("Callback event listener reconnected; re-read events since %s", catch_up_since)
                    catch_up_since = None
                driver = connection.connection.driver_connection
                if driver is None:  # SQLAlchemy gives a live connection's driver connection
                    raise StoreUnavailableError("the listener's connection has no psycopg connection")
                seqs = [int(n.payload) for n in driver.notifies(timeout=self.poll_interval * 20, stop_after=1)]
                if seqs:
                    seqs += [int(n.payload) for n in driver.notifies(timeout=0)]
                    self._dispatch(self._fetch_seqs(connection, seqs))
                heard_at = time.time()
            except Exception:  # keep listening through database restarts
                log.warning("Callback event listener lost the database; reconnecting", exc_info=True)
                if catch_up_since is None:
                    catch_up_since = int(heard_at * 1000) - LOOKBACK_MS
                if connection is not None:
                    try:
                        connection.invalidate()
                        connection.close()
                    except Exception:  # the connection is gone already
                        pass
                connection = None
                self._stop.wait(_RECONNECT_WAIT)
        if connection is not None:
            connection.close()

    def _fetch_seqs(self, connection: Connection, seqs: list[int]) -> list[StoredEvent]:
        table = CallbackEventRow.__table__
        wanted = sorted({seq for seq in seqs if seq not in self._recent})
        if not wanted:
            return []
        rows = connection.execute(select(table).where(table.c.seq.in_(wanted)).order_by(table.c.seq)).all()
        return self._remember([StoredEvent.from_row(row) for row in rows])

    def _fetch_since(self, connection: Connection, since: int) -> list[StoredEvent]:
        table = CallbackEventRow.__table__
        rows = connection.execute(select(table).where(table.c.received_at >= since).order_by(table.c.seq)).all()
        return self._remember([StoredEvent.from_row(row) for row in rows if row.seq not in self._recent])

    def _remember(self, events: list[StoredEvent]) -> list[StoredEvent]:
        """Record dispatched rows (PostgreSQL) so a catch-up does not hand them out twice."""
        horizon = int(time.time() * 1000) - 2 * LOOKBACK_MS
        if len(self._recent) > 10_000:
            self._recent = {seq: at for seq, at in self._recent.items() if at >= horizon}
        for stored in events:
            self._recent[stored.seq] = stored.received_at
            self._cursor = max(self._cursor, stored.seq)
        return events

    def _run_polling(self) -> None:
        """SQLite: check ``PRAGMA data_version``; when it changed, fetch the rows after the cursor."""
        last_version: int | None = None
        connection: Connection | None = None
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                version = int(connection.execute(text("PRAGMA data_version")).scalar_one())
                if version != last_version:
                    last_version = version
                    self._dispatch(self._fetch(connection))
            except Exception:  # keep listening through database hiccups
                log.exception("Callback event listener failed; reconnecting")
                if connection is not None:
                    connection.close()
                connection = None
                last_version = None
            self._stop.wait(self.poll_interval)
        if connection is not None:
            connection.close()

    def _fetch(self, connection: Connection) -> list[StoredEvent]:
        """SQLite: the rows after the cursor (``seq`` follows commit order: the cursor is exact)."""
        table = CallbackEventRow.__table__
        rows = connection.execute(select(table).where(table.c.seq > self._cursor).order_by(table.c.seq)).all()
        events = [StoredEvent.from_row(row) for row in rows]
        for stored in events:
            self._cursor = max(self._cursor, stored.seq)
        return events

    def _dispatch(self, events: list[StoredEvent]) -> None:
        with self._lock:
            for stored in events:
                targets: set[Subscription] = set(self._everything)
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
    """The process-wide listener of ``store`` (default: the configured store); re-created after a fork.

    Not started: call :meth:`StoreListener.start` (in a thread from async code) before subscribing.
    """
    store = store or get_store()
    key = (os.getpid(), store.url)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = StoreListener(store)
        return listener
