"""The file of a SQLite event store: created with mode 0600, and every connection kept on the file at its path.

A SQLite connection keeps the file it opened, also after that file was deleted or another file was
renamed over its path; new connections (another process's, or this one's after a reconnect) open what is
at the path now. Without care a receiver would go on answering 2xx for events written into a deleted
file that no trigger or CLI ever reads. And SQLite names the WAL and shared-memory files after the path
(``<db>-wal``, ``<db>-shm``), so the first connection to a new file at the path would attach the old
file's ``-wal`` and ``-shm``: the old WAL is replayed over the new file, and old and new connections share
one WAL index (see "unlinking or renaming a database file while in use" in SQLite's "How To Corrupt An
SQLite Database File").

:class:`SqliteFile` installs engine events that keep a store on the file at its path:

* **connect** (``do_connect``): under an exclusive ``flock`` on ``<db>-lock`` (shared by every process
  of this package): create the file with mode 0600 if it is missing (``O_CREAT | O_EXCL``; SQLite gives
  ``-wal``/``-shm`` the main file's mode); remove ``-wal`` and ``-shm`` when they belong to another file
  (``<db>-lock`` records the (st_dev, st_ino) of the file they belong to); open the file with
  ``mode=rw`` (SQLite never creates it); set the pragmas and read once, so SQLite has opened ``-wal`` and
  ``-shm`` before the lock is released. The connection's ``info`` records the file's (st_dev, st_ino).
* **checkout**: one ``os.stat`` of the path; a connection whose file is no longer at the path raises
  ``DisconnectionError``, so the pool closes it and connects again, to the file now at the path (created
  empty if the path is missing). A connection to a file without the store's tables (the connect step
  looks) first runs :func:`~airflow_edc_callbacks.store.schema.upgrade` (under a lock, on a connection of
  its own), so a new file gets the schema before the first statement.
* **commit** and **checkin**: the file the committing connection opened is compared with the path's
  (one ``os.stat``) when the connection is returned, before any other thread can take it, close it and
  free the old file's inode number for a new file; the store asks for the result
  (:meth:`SqliteFile.committed_to_path`).

The checks that decide whether a connection is replaced or a write is reported compare (st_dev, st_ino)
while a connection still has the old file open, because a file's inode number can be given to a new file
once nobody has the old one open. (The record in ``<db>-lock`` is compared without that guarantee; a file
this package creates has its ``-wal``/``-shm`` removed whatever the record says.)

A write that committed into a file that is no longer at the path is therefore reported (the receiver
answers 503); a write that starts after the file was deleted or replaced goes to the file at the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from airflow_edc_callbacks.store.schema import VERSION_TABLE, upgrade

log = logging.getLogger(__name__)

__all__ = ["FILE_INFO_KEY", "FileId", "SqliteFile", "SqliteFileError", "file_id"]

FileId = tuple[int, int]
"""A file's identity: ``(st_dev, st_ino)``."""

FILE_INFO_KEY = "edc_callbacks.sqlite_file"
"""Key in a pooled connection's ``info``: the :data:`FileId` of the file the connection opened."""

_NEEDS_SCHEMA_KEY = "edc_callbacks.needs_schema"

SIDECAR_SUFFIXES = ("-wal", "-shm")
"""The files SQLite keeps next to a WAL database, named after its path."""

LOCK_SUFFIX = "-lock"
"""``<db>-lock``: locked while a connection is made; holds the id of the file ``-wal``/``-shm`` belong to."""

LOCK_TIMEOUT = 10.0
"""Seconds to wait for ``<db>-lock`` (as long as SQLite's ``busy_timeout``)."""

_MODE = 0o600


class SqliteFileError(SQLAlchemyError):
    """The store's file or its lock file cannot be created, locked or examined (an ``OSError`` underneath).

    A ``SQLAlchemyError``, so the store reports it as :class:`~airflow_edc_callbacks.exceptions.StoreUnavailableError`.
    """


def file_id(path: str) -> FileId | None:
    """The (st_dev, st_ino) of the file at ``path`` (symbolic links followed), ``None`` if there is none.

    :raises SqliteFileError: ``path`` cannot be examined (permissions, a missing directory).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise SqliteFileError(f"Cannot examine {path}: {err}") from err
    return (st.st_dev, st.st_ino)


class SqliteFile:
    """Keeps the connections of an engine on the SQLite file at ``path`` (see the module docstring).

    :param path: the database file (made absolute, as SQLAlchemy's SQLite dialect does).
    :param on_connect: applied to each new DBAPI connection under the lock (the store's pragmas; it must
        set ``journal_mode=WAL``).
    :param lock_timeout: seconds to wait for ``<db>-lock`` before a connection attempt fails.
    """

    def __init__(self, path: str, on_connect: Callable[[Any], None], lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + LOCK_SUFFIX
        self._on_connect = on_connect
        self._lock_timeout = lock_timeout
        self._schema_lock = threading.Lock()
        self._committed = threading.local()  # .pending: file id of a commit; .verdict: checked at checkin

    def install(self, engine: Engine) -> None:
        """Register the connect, checkout and commit events on ``engine`` (a pooled engine of this file)."""
        event.listen(engine, "do_connect", self._connect)
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "checkin", self._checkin)

    # -- connecting ----------------------------------------------------------------------------
    def _connect(self, dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        """``do_connect``: open the file at the path (created 0600 if missing) without stale ``-wal``/``-shm``."""
        uri = f"file:{quote(self.path)}?mode=rw"  # mode=rw: SQLite never creates the file (with its own mode)
        for _attempt in range(3):
            with self._locked() as lock_fd:
                expected = self._prepare(lock_fd)
                dbapi_connection = dialect.connect(uri, **{**cparams, "uri": True})
                try:
                    self._on_connect(dbapi_connection)
                    cursor = dbapi_connection.cursor()
                    # a read: SQLite opens -wal and -shm now, under the lock
                    cursor.execute(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
                    )
                    needs_schema = cursor.fetchone()[0] == 0
                    cursor.close()
                    opened = file_id(self.path) == expected
                except BaseException:
                    dbapi_connection.close()
                    raise
            if opened:
                conn_rec.info[FILE_INFO_KEY] = expected
                conn_rec.info[_NEEDS_SCHEMA_KEY] = needs_schema
                return dbapi_connection
            dbapi_connection.close()  # the file was replaced while it was opened: try again
        raise SqliteFileError(f"{self.path} was replaced while connecting to it, three times in a row")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """Hold an exclusive ``flock`` on ``<db>-lock`` (created 0600); yields its descriptor.

        :raises SqliteFileError: the lock file cannot be opened, or another process held the lock for
            ``lock_timeout`` seconds.
        """
        deadline = time.monotonic() + self._lock_timeout
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)
            except OSError as err:
                raise SqliteFileError(f"Cannot open the lock file {self.lock_path}: {err}") from err
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise SqliteFileError(
                                f"{self.lock_path} stayed locked for {self._lock_timeout:.0f} s"
                            ) from None
                        time.sleep(0.005)
                st = os.fstat(fd)
                if file_id(self.lock_path) == (st.st_dev, st.st_ino):  # not deleted or replaced meanwhile
                    yield fd
                    return
            finally:
                os.close(fd)  # releases the lock

    def _prepare(self, lock_fd: int) -> FileId:
        """Under the lock: create the file if missing, drop ``-wal``/``-shm`` of another file; return its id.

        :raises SqliteFileError: the file cannot be created or examined.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _MODE)
        except FileExistsError:
            created = False
            current = file_id(self.path)
            if current is None:
                raise SqliteFileError(f"{self.path} was deleted while connecting to it") from None
        except OSError as err:
            raise SqliteFileError(f"Cannot create {self.path}: {err}") from err
        else:
            created = True
            try:
                os.fchmod(fd, _MODE)  # whatever the umask
                st = os.fstat(fd)
            finally:
                os.close(fd)
            current = (st.st_dev, st.st_ino)
        owner = _read_owner(lock_fd)
        if created or (owner is not None and owner != current):
            # nobody has the new file open yet (we hold the lock): any -wal/-shm at the path are the old file's
            base = os.path.realpath(self.path)  # SQLite names them after the resolved path
            for suffix in SIDECAR_SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(base + suffix)
            if owner is not None:
                log.warning(
                    "The callback event store file %s was %s; continuing with %s (events stored in the old file "
                    "are not in it)",
                    self.path,
                    "deleted" if created else "replaced by another file",
                    "a new empty file" if created else "the file now at that path",
                )
        if owner != current:
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"{current[0]} {current[1]}\n".encode(), 0)
        return current

    # -- checking ------------------------------------------------------------------------------
    def _checkout(self, _dbapi_connection: Any, conn_rec: Any, _proxy: Any) -> None:
        """``checkout``: a connection whose file is no longer at the path is closed and made again.

        :raises DisconnectionError: the connection's file was deleted or replaced (the pool reconnects).
        :raises SqliteFileError: the path cannot be examined.
        :raises sqlalchemy.exc.SQLAlchemyError: a new file's tables cannot be created.
        """
        if conn_rec.info.get(FILE_INFO_KEY) != file_id(self.path):  # compared while this connection pins its file
            log.warning("The callback event store file %s was deleted or replaced; reconnecting", self.path)
            raise DisconnectionError(f"The callback event store file {self.path} was deleted or replaced")
        if conn_rec.info.get(_NEEDS_SCHEMA_KEY):
            self._create_schema()
            conn_rec.info[_NEEDS_SCHEMA_KEY] = False

    def _create_schema(self) -> None:
        """Create the store's tables in the file at the path (a no-op when another connection did already)."""
        with self._schema_lock:
            engine = create_engine(f"sqlite:///{self.path}", poolclass=NullPool, hide_parameters=True)
            event.listen(engine, "do_connect", self._connect)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
        log.info("Created or checked the callback event store's tables in %s", self.path)

    def _commit(self, connection: Any) -> None:
        """``commit`` (just before the DBAPI commit): note the file this thread's transaction writes to."""
        self._committed.pending = connection.info.get(FILE_INFO_KEY)
        self._committed.verdict = None

    def _checkin(self, _dbapi_connection: Any, conn_rec: Any) -> None:
        """``checkin`` (before the pool hands the connection to anyone else): check a noted commit's file."""
        pending = getattr(self._committed, "pending", None)
        if pending is not None and conn_rec is not None and conn_rec.info.get(FILE_INFO_KEY) == pending:
            self._committed.pending = None
            try:
                self._committed.verdict = pending == file_id(self.path)
            except SqliteFileError:
                self._committed.verdict = False

    def committed_to_path(self) -> bool:
        """Whether the last transaction this thread committed went into the file that is at the path now.

        Call it right after the commit returned and the connection went back to the pool (the check is
        made then, one ``os.stat``, while no other thread can have closed that connection). ``False`` too
        when the path could not be examined, or no commit was noted.
        """
        verdict = getattr(self._committed, "verdict", None)
        self._committed.verdict = None
        return verdict is True

    def is_current(self, info: Mapping[Any, Any]) -> bool:
        """Whether the connection with this ``info`` (``Connection.info``) is on the file now at the path.

        :raises SqliteFileError: the path cannot be examined.
        """
        return info.get(FILE_INFO_KEY) == file_id(self.path)


def _read_owner(lock_fd: int) -> FileId | None:
    """The file id recorded in ``<db>-lock`` (``-wal``/``-shm`` belong to it), ``None`` if none is recorded."""
    try:
        dev, ino = os.pread(lock_fd, 64, 0).split()
        return (int(dev), int(ino))
    except ValueError:
        return None
