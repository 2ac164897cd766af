"""The durable callback event store, assembled from its concerns, and the process-wide store per URL."""

from __future__ import annotations

import os
import threading

from airflow_edc_callbacks.store.bindings import Bindings
from airflow_edc_callbacks.store.cursors import WatcherCursors
from airflow_edc_callbacks.store.edr_locks import EdrRefreshLocks
from airflow_edc_callbacks.store.events import EventLog
from airflow_edc_callbacks.store.retention import Retention


class EventStore(EventLog, Bindings, WatcherCursors, EdrRefreshLocks, Retention):
    """Callback events in a SQL database (SQLite file by default, PostgreSQL in production).

    Creates or upgrades its tables on first use (:func:`~airflow_edc_callbacks.store.schema.upgrade`).
    A SQLite file is created with mode 0600 and never written once it was deleted or replaced
    (:mod:`~airflow_edc_callbacks.store.sqlite_file`).
    Methods are synchronous and thread-safe; call them from a thread
    (``asyncio.to_thread``) in async code. Its concerns: the events
    (:class:`~airflow_edc_callbacks.store.events.EventLog`), bindings and holds
    (:class:`~airflow_edc_callbacks.store.bindings.Bindings`), event triggers' cursors
    (:class:`~airflow_edc_callbacks.store.cursors.WatcherCursors`), EDR refresh locks
    (:class:`~airflow_edc_callbacks.store.edr_locks.EdrRefreshLocks`) and retention
    (:class:`~airflow_edc_callbacks.store.retention.Retention`).

    :param url: ``sqlite:///<path>`` or ``postgresql+psycopg://<user>:<password>@<host>/<database>``;
        any other database or driver is refused (see
        :func:`~airflow_edc_callbacks.store.engine.parse_store_url`).
    :param pool_size: connections kept open in the pool when idle (more are opened under load, up to
        ``pool_size + 8``, and closed when returned); ``0``: no connection is kept between uses.
    :param migrate: create or upgrade the tables (Alembic); ``False`` for a short-lived process that only
        writes into a store the api-server and triggerer keep current (a worker binding a process).
    :raises StoreUnavailableError: the URL is not accepted, or the database cannot be opened.
    """


_stores: dict[tuple[int, str, bool], EventStore] = {}
_stores_lock = threading.Lock()


def get_store(url: str | None = None, *, waiting: bool = False, migrate: bool = True) -> EventStore:
    """The process-wide :class:`EventStore` for ``url`` (default: ``[edc_callbacks] store_url``).

    One per process, URL and use, re-created after a fork. ``waiting`` is the store of processes that
    wait for events (triggerers, workers): it keeps no connection between uses (``pool_size=0``), so
    thousands of waiting triggers cost one connection per process while idle, the listener's; a trigger
    reads the store when it starts and renews its hold hourly. The trade-off: each such use opens its own
    connection, so a triggerer starting thousands of triggers at once holds up to as many connections as
    its event loop's worker threads run store calls (Python's default: min(32, CPUs + 4)); size the
    database's ``max_connections`` for that. Receivers keep a pool of five (up to 13 under load) for
    bursts of callbacks.

    :raises StoreUnavailableError: the URL is not accepted, or the database cannot be opened or upgraded.
    """
    if url is None:
        from airflow_edc_callbacks.config import get_store_url

        url = get_store_url()
    key = (os.getpid(), url, waiting)
    with _stores_lock:
        store = _stores.get(key)
        if store is not None and migrate:  # opened without Alembic before
            store.upgrade_schema()
        if store is None:
            store = EventStore(url, pool_size=0 if waiting else 5, migrate=migrate if waiting else True)
            _stores[key] = store
        return store
