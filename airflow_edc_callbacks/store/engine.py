"""The event store's database: which URLs it accepts, and the SQLAlchemy engine and pool it opens.

Two kinds of URL, nothing else: ``sqlite:///<path>`` (one machine) and
``postgresql+psycopg://<user>:<password>@<host>/<database>`` (psycopg 3, the ``[postgres]`` extra; its
LISTEN/NOTIFY wakes the waiting triggers). Other drivers are refused when the store is opened, with a
message that names these two: the listener relies on SQLite's commit order or on PostgreSQL's NOTIFY
through psycopg, and has no mode for anything else.

Pools are SQLAlchemy's own: a store that serves bursts (the receiver's) keeps ``pool_size`` connections
(``QueuePool``, checked with ``pool_pre_ping`` on PostgreSQL); a store with ``pool_size=0`` (the one of
waiting triggers, :func:`~airflow_edc_callbacks.store.get_store` with ``waiting=True``) keeps none
(``NullPool``): each use opens a connection and closes it when done, so an idle process holds no
connection but its listener's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.store.sqlite_file import SqliteFileGuard

ACCEPTED_URL_FORMS = ("sqlite:///<path>", "postgresql+psycopg://<user>:<password>@<host>/<database>")
"""The two forms of ``[edc_callbacks] store_url`` the store accepts."""

_ACCEPTED_DRIVERS = ("sqlite", "postgresql+psycopg")

MAX_OVERFLOW = 8
"""Connections a pooled store opens beyond ``pool_size`` under load (closed again when returned)."""

PG_CONNECT_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""libpq parameters of every PostgreSQL store connection, unless the store URL's query sets them (seconds;
``tcp_user_timeout`` in milliseconds). A database that stops answering (a host gone, a network that drops
packets) fails a connection attempt within 10 s, a statement or commit in flight within about 30 s and an
idle connection (the listener's) within about a minute, instead of the kernel's TCP time-outs of about
15 minutes: the receiver's writer, which commits one group at a time, answers the waiting callbacks 503
instead of holding them, and the listener reconnects."""


def parse_store_url(url: str) -> URL:
    """Parse an event store URL and refuse every form but :data:`ACCEPTED_URL_FORMS`.

    :param url: a SQLAlchemy URL, e.g. ``sqlite:////opt/airflow/edc_callbacks.db`` or
        ``postgresql+psycopg://airflow:pw@postgres/edc_callbacks``.
    :returns: the parsed URL.
    :raises StoreUnavailableError: it is no URL, or another database or driver (e.g.
        ``postgresql+psycopg2://``, ``postgresql://``, ``mysql://``); the message names the accepted forms
        and never the password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise StoreUnavailableError(f"The callback event store URL cannot be parsed: {err}") from err
    if parsed.drivername not in _ACCEPTED_DRIVERS:
        accepted = " or ".join(ACCEPTED_URL_FORMS)
        raise StoreUnavailableError(
            f"The callback event store does not support {parsed.drivername}:// URLs; "
            f"use {accepted} (psycopg 3: install the [postgres] extra)"
        )
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the receiver's writes
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the receiver answers 2xx
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class StoreEngine:
    """The engine of one store URL, with its pool and (SQLite) its file guard.

    :param url: an accepted store URL (see :func:`parse_store_url`).
    :param pool_size: connections kept open when idle; more are opened under load, up to
        ``pool_size +`` :data:`MAX_OVERFLOW`, and closed when returned. ``0``: none is kept (``NullPool``).
    :ivar engine: the SQLAlchemy engine (errors hide their parameters: event bodies carry EDR tokens).
    :ivar is_sqlite: the URL is ``sqlite``; else it is ``postgresql+psycopg``.
    :ivar sqlite_file: the guard of the SQLite file, ``None`` for PostgreSQL and in-memory SQLite.
    :raises StoreUnavailableError: the URL is not accepted.
    :raises OSError: the SQLite file or its directory cannot be created.
    :raises sqlalchemy.exc.SQLAlchemyError: SQLAlchemy refused the URL or options.
    """

    def __init__(self, url: str, *, pool_size: int) -> None:
        parsed = parse_store_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.sqlite_file: SqliteFileGuard | None = None
        in_memory = self.is_sqlite and parsed.database in (None, "", ":memory:")
        if self.is_sqlite and not in_memory and not parsed.query.get("uri"):
            path = Path(str(parsed.database))
            path.parent.mkdir(parents=True, exist_ok=True)
            self.sqlite_file = SqliteFileGuard(path)  # 0600, never written once gone
        pooling: dict[str, Any]
        if in_memory:  # SQLAlchemy's pool for one in-memory database per thread
            pooling = {}
        elif pool_size == 0:
            pooling = {"poolclass": NullPool}
        else:
            pooling = {"pool_size": pool_size, "max_overflow": MAX_OVERFLOW, "pool_pre_ping": not self.is_sqlite}
        if not self.is_sqlite:
            pooling["connect_args"] = {k: v for k, v in PG_CONNECT_DEFAULTS.items() if k not in parsed.query}
        self.engine: Engine = create_engine(parsed, hide_parameters=True, **pooling)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if self.sqlite_file is not None:
            self.sqlite_file.install(self.engine)
