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
  (``<db>-lock`` records the file they belong to: st_dev, st_ino and a random generation the store writes
  into each file it creates as its ``user_version``); open the file with ``mode=rw`` (SQLite never creates
  it); set the pragmas and read once, so SQLite has opened ``-wal`` and ``-shm`` before the lock is
  released. The connection's ``info`` records the file's (st_dev, st_ino).
* **checkout**: one ``os.stat`` of the path; a connection whose file is no longer at the path raises
  ``DisconnectionError``, so the pool closes it and connects again, to the file now at the path (created
  empty if the path is missing). A connection to a file without the store's tables (the connect step
  looks) first runs :func:`~airflow_edc_callbacks.store.schema.upgrade` (one at a time per process, on a
  connection of its own), so a new file gets the schema before the first statement.
* **commit** and **checkin**: the file the committing connection opened is compared with the path's
  (one ``os.stat``) when the connection is returned, before any other thread can take it, close it and
  free the old file's inode number for a new file; the store asks for the result
  (:meth:`SqliteFile.committed_to_path`).

The checks that decide whether a connection is replaced or a write is reported compare (st_dev, st_ino)
while a connection still has the old file open, because a file's inode number can be given to a new file
once nobody has the old one open. (The record in ``<db>-lock`` is compared without that guarantee, hence
its generation.)

A write that committed into a file that is no longer at the path is therefore reported (the receiver
answers 503); a write that starts after the file was deleted or replaced goes to the file at the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from airflow_edc_callbacks.store.schema import VERSION_TABLE, head_revision, known_revisions, upgrade

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
_USER_VERSION_OFFSET = 60  # of the 4-byte big-endian user_version in a SQLite file's header


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
                prepared = self._prepare(lock_fd)
                if prepared is None:  # deleted between our attempt to create it and our look
                    continue
                expected, generation = prepared
                dbapi_connection = None
                try:
                    dbapi_connection = dialect.connect(uri, **{**cparams, "uri": True})
                    if file_id(self.path) != expected:
                        # SQLite may have opened a file renamed over the path since we looked. It has read
                        # nothing yet; after a statement it would attach -wal/-shm we vetted for the other
                        # file, and closing it would checkpoint that WAL into this file and delete them.
                        dbapi_connection.close()
                        continue
                    if generation is None:  # a new file: before WAL, so it is in the file itself
                        generation = secrets.randbelow(2**31 - 1) + 1
                        dbapi_connection.execute(f"PRAGMA user_version = {generation}")
                    self._on_connect(dbapi_connection)
                    needs_schema = _needs_upgrade(dbapi_connection)  # a read: SQLite opens -wal and -shm now
                    opened = file_id(self.path) == expected
                except dialect.loaded_dbapi.Error:
                    if dbapi_connection is not None:
                        dbapi_connection.close()
                    if file_id(self.path) != expected:  # deleted or replaced while we opened it
                        continue
                    raise
                except BaseException:
                    if dbapi_connection is not None:
                        dbapi_connection.close()
                    raise
                if opened:
                    _write_owner(lock_fd, (*expected, generation))  # -wal and -shm belong to this file now
            if opened:
                conn_rec.info[FILE_INFO_KEY] = expected
                conn_rec.info[_NEEDS_SCHEMA_KEY] = needs_schema
                return dbapi_connection
            dbapi_connection.close()  # the file was replaced while it was opened: try again
        raise SqliteFileError(f"{self.path} was deleted or replaced while connecting to it, three times in a row")

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

    def _prepare(self, lock_fd: int) -> tuple[FileId, int | None] | None:
        """Under the lock: create the file if missing, drop ``-wal``/``-shm`` of another file.

        ``<db>-lock`` records the file ``-wal``/``-shm`` belong to as (st_dev, st_ino, generation): the
        generation is the ``user_version`` in the file's header, a random number the store writes into each
        file it creates, because a new file can get the inode number of a deleted one. A new or empty file
        (no header yet) gets its ``-wal``/``-shm`` removed whatever the record says; nobody has it open.

        :returns: the file's id and generation (``None``: a new file, to be given one), or ``None`` if the
            file was deleted between the attempt to create it and the look.
        :raises SqliteFileError: the file cannot be created or examined.
        """
        created = False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _MODE)
            created = True
        except FileExistsError:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            except OSError as err:
                raise SqliteFileError(f"Cannot open {self.path}: {err}") from err
        except OSError as err:
            raise SqliteFileError(f"Cannot create {self.path}: {err}") from err
        try:
            if created:
                os.fchmod(fd, _MODE)  # whatever the umask
            st = os.fstat(fd)
            header = os.pread(fd, 4, _USER_VERSION_OFFSET)  # the same file as the fstat
        except OSError as err:
            raise SqliteFileError(f"Cannot examine {self.path}: {err}") from err
        finally:
            os.close(fd)
        current = (st.st_dev, st.st_ino)
        generation = int.from_bytes(header, "big") if len(header) == 4 else None
        owner = _read_owner(lock_fd)
        if generation is None or (owner is not None and owner != (*current, generation)):
            # nobody has this file open with -wal/-shm yet (we hold the lock): those at the path are another file's
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
        return current, generation

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
            self._create_schema()  # in the file at the path
            conn_rec.info[_NEEDS_SCHEMA_KEY] = False
            if conn_rec.info.get(FILE_INFO_KEY) != file_id(self.path):  # not this connection's file any more
                raise DisconnectionError(f"The callback event store file {self.path} was deleted or replaced")

    def _create_schema(self) -> None:
        """Create the store's tables in the file at the path (a no-op when another connection did already).

        :raises sqlalchemy.exc.SQLAlchemyError: the database refused.
        :raises SqliteFileError: the migration failed otherwise (an Alembic error).
        """
        engine = create_engine(f"sqlite:///{self.path}", poolclass=NullPool, hide_parameters=True)
        event.listen(engine, "do_connect", self._connect)
        try:
            upgrade(engine)  # one at a time per process (a lock in upgrade)
        except SQLAlchemyError:
            raise
        except Exception as err:  # reported as the store being unavailable, never as a crash of the caller
            raise SqliteFileError(f"Cannot create the tables in {self.path}: {err!r}") from err
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


@functools.cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and every revision this package ships (read once per process)."""
    return head_revision(), known_revisions()


def _needs_upgrade(dbapi_connection: Any) -> bool:
    """Whether the connection's file lacks the store's tables or has them at an older revision of ours.

    ``False`` at the head revision, and at a revision this package does not know (a newer version of it
    upgraded the store: leave it alone, as a store opened before that upgrade does). ``True`` while another
    connection is still creating the tables (Alembic writes the head revision last).
    """
    head, known = _revisions()
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,))
        if cursor.fetchone()[0] == 0:
            return True
        cursor.execute(f'SELECT version_num FROM "{VERSION_TABLE}"')
        versions = [row[0] for row in cursor.fetchall()]
    finally:
        cursor.close()
    return not versions or (versions[0] != head and versions[0] in known)


def _read_owner(lock_fd: int) -> tuple[int, int, int] | None:
    """(st_dev, st_ino, generation) recorded in ``<db>-lock``: ``-wal``/``-shm`` belong to that file.

    ``None`` if nothing is recorded (a store opened by an earlier version: its ``-wal``/``-shm`` are trusted).
    """
    try:
        dev, ino, generation = os.pread(lock_fd, 96, 0).split()
        return (int(dev), int(ino), int(generation))
    except ValueError:
        return None


def _write_owner(lock_fd: int, owner: tuple[int, int, int]) -> None:
    if _read_owner(lock_fd) != owner:
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, "{} {} {}\n".format(*owner).encode(), 0)
