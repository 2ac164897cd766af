"""What every part of the event store shares: the engine, the sessions and the typed errors.

:class:`~airflow_edc_callbacks.store.EventStore` is assembled from one class per concern (events,
bindings and holds, watcher cursors, EDR refresh locks, retention), each in its own module and each a
:class:`StoreBase`: it opens the database once and gives them :meth:`StoreBase._reading` and
:meth:`StoreBase._writing`, which turn every database error into
:class:`~airflow_edc_callbacks.exceptions.StoreUnavailableError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.store.engine import StoreEngine
from airflow_edc_callbacks.store.schema import upgrade


class StoreBase:
    """Opens a store's database (and creates or upgrades its tables); the base of its concerns.

    :param url: a ``sqlite`` or ``postgresql+psycopg`` SQLAlchemy URL (see
        :func:`~airflow_edc_callbacks.store.engine.parse_store_url`).
    :param pool_size: connections kept open when idle (``0``: none, see
        :class:`~airflow_edc_callbacks.store.engine.StoreEngine`).
    :param migrate: create or upgrade the tables (Alembic); ``False`` for a short-lived process that only
        writes into a store the api-server and triggerer keep current (a worker binding a process).
    :raises StoreUnavailableError: the URL is not accepted or the database cannot be opened.
    """

    def __init__(self, url: str, *, pool_size: int = 5, migrate: bool = True) -> None:
        self.url = url
        self.pool_size = pool_size
        try:
            opened = StoreEngine(url, pool_size=pool_size)
            self.engine = opened.engine
            self.is_sqlite = opened.is_sqlite
            self.is_postgresql = not opened.is_sqlite
            self.sqlite_file = opened.sqlite_file
            self.migrated = migrate
            if migrate:
                upgrade(self.engine)
        except (SQLAlchemyError, OSError) as err:
            raise StoreUnavailableError(f"Cannot open the callback event store {self!r}: {err}") from err
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        try:
            shown = make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:  # not a URL: say nothing of it (it may hold a password)
            shown = "<unparsable URL>"
        return f"{type(self).__name__}({shown!r})"

    def _insert(self) -> Any:
        """The dialect's ``insert`` (both have ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
        return sqlite_insert if self.is_sqlite else pg_insert

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Session]:
        """A session for reads.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                yield session
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    @contextlib.contextmanager
    def _writing(self, failure: str = "Cannot write to the callback event store") -> Iterator[Session]:
        """A session in a transaction, committed when the block ends without an error.

        :param failure: the start of the error message.
        :raises StoreUnavailableError: the write failed.
        """
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"{failure}: {err}") from err

    def upgrade_schema(self) -> None:
        """Create or upgrade the tables if this store was opened with ``migrate=False``.

        :raises StoreUnavailableError: the upgrade failed.
        """
        if self.migrated:
            return
        try:
            upgrade(self.engine)
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot open the callback event store {self!r}: {err}") from err
        self.migrated = True

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()
