"""The durable callback event store: idempotent writes, reads by correlation id or process id, purge."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, case, create_engine, delete, event, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from airflow_edc_callbacks.exceptions import EventConflictError, ProcessBoundElsewhereError, StoreUnavailableError
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.store.schema import upgrade
from airflow_edc_callbacks.store.sqlite_file import SqliteFileGuard
from airflow_edc_callbacks.store.tables import (
    CallbackEventRow,
    EdrRefreshLockRow,
    ProcessBindingRow,
    TriggerCursorRow,
    TriggerFiredRow,
    TriggerHoldRow,
)

log = logging.getLogger(__name__)

__all__ = ["NOTIFY_CHANNEL", "EventStore", "StoredEvent", "body_sha256", "get_store"]

NOTIFY_CHANNEL = "edc_callback_events"
"""PostgreSQL: the channel each new event's ``seq`` is sent on (``pg_notify``) when its insert commits."""


@dataclass(frozen=True)
class StoredEvent:
    """An event as the store holds it.

    :ivar seq: position in the store (increasing in the order events were stored).
    :ivar event_at: the envelope's ``at``, epoch milliseconds (connector clock).
    :ivar received_at: when the receiver stored it, epoch milliseconds.
    :ivar routes: the routes it arrived by, e.g. ``("dynamic",)``.
    :ivar body: the envelope exactly as received (JSON object).
    """

    seq: int
    envelope_id: str
    event_type: str
    process_id: str | None
    correlation_id: str | None
    event_at: int
    received_at: int
    routes: tuple[str, ...]
    body: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        """The envelope's ``payload`` object."""
        payload = self.body.get("payload")
        return payload if isinstance(payload, dict) else {}

    @property
    def via_static(self) -> bool:
        """Whether a static callback route delivered it (its registration's secret was checked): it has a
        ``static:<name>`` route, or no correlation id (the receiver stores every event of a dynamic
        callback token with the token's correlation id, so a token-less event came by a static route)."""
        return self.correlation_id is None or any(route.startswith("static:") for route in self.routes)

    def trusted(self, bound_correlation: str | None) -> bool:
        """The trust rule: whether this event may drive a waiting task, a sensor, a watcher or an EDR.

        True when a static route delivered it, or when it came with the token of ``bound_correlation``,
        the correlation id its process is bound to (:meth:`EventStore.binding`; ``None`` while unbound).
        An event posted with the token of another task instance, or of a correlation id no process is
        bound to, is not trusted.
        """
        return self.via_static or self.correlation_id == bound_correlation

    @classmethod
    def from_row(cls, row: CallbackEventRow | Any) -> StoredEvent:
        """Build from an ORM row or a Core row of the same columns."""
        return cls(
            seq=row.seq,
            envelope_id=row.envelope_id,
            event_type=row.event_type,
            process_id=row.process_id,
            correlation_id=row.correlation_id,
            event_at=row.event_at,
            received_at=row.received_at,
            routes=tuple(row.routes.split()),
            body=row.body,
        )


def body_sha256(body: Any) -> str:
    """Hex SHA-256 of a JSON document's canonical form (sorted keys, no white space, UTF-8): two deliveries
    of one event have the same, whatever order the sender wrote the keys in.

    :raises ValueError: the document cannot be serialised (nested too deeply for the encoder).
    """
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise ValueError("JSON document nested too deeply to hash") from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the receiver's writes
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the receiver answers 2xx
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class _IdleConnectionCloser:
    """Closes an engine's idle pooled connections once none was checked out for ``idle_timeout`` seconds.

    A watcher thread runs only from a check-in until the pool has been idle that long (between one and
    two timeouts), so an idle process has no thread waking up for this. Checked-out connections (the
    listener's) are left alone: ``QueuePool.dispose()`` only closes the connections idle in the pool,
    and the pool opens new ones on the next checkout. ``dispose()`` forgets the checked-out connection
    in its count, so a process may open one more connection under load than ``pool_size + 8``.
    """

    def __init__(self, engine: Engine, idle_timeout: float) -> None:
        self._engine = engine
        self._timeout = idle_timeout
        self._lock = threading.Lock()
        self._checkouts = 0
        self._watching = False
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)

    def _on_checkout(self, *_args: Any) -> None:
        with self._lock:
            self._checkouts += 1

    def _on_checkin(self, *_args: Any) -> None:
        with self._lock:
            if self._watching:
                return
            self._watching = True
        try:
            threading.Thread(target=self._watch, name="edc-callbacks-idle-closer", daemon=True).start()
        except RuntimeError as err:  # no thread to spare, or shutting down: keep the connections, never raise
            log.warning("Cannot watch the callback event store's idle connections: %s", err)
            with self._lock:
                self._watching = False

    def _watch(self) -> None:
        with self._lock:
            seen = self._checkouts
        while True:
            time.sleep(self._timeout)
            with self._lock:
                if self._checkouts == seen:
                    self._watching = False
                    break
                seen = self._checkouts
        self._engine.pool.dispose()


class EventStore:
    """Callback events in a SQL database (SQLite file by default, PostgreSQL in production).

    Creates or upgrades its tables on first use (:func:`~airflow_edc_callbacks.store.schema.upgrade`).
    A SQLite file is created with mode 0600 and never written once it was deleted or replaced
    (:mod:`~airflow_edc_callbacks.store.sqlite_file`).
    Methods are synchronous and thread-safe; call them from a thread
    (``asyncio.to_thread``) in async code.

    :param url: a SQLAlchemy URL, e.g. ``sqlite:////opt/airflow/edc_callbacks.db`` or
        ``postgresql+psycopg2://user:pw@host/db``.
    :param pool_size: connections kept open in the pool when idle (more are opened under load, up to
        ``pool_size + 8``, and closed when returned).
    :param idle_timeout: seconds without any use after which the pool's idle connections are closed
        too (``None``: kept open); the store of waiting processes uses it (see :func:`get_store`).
    :param migrate: create or upgrade the tables (Alembic); ``False`` for a short-lived process that only
        writes into a store the api-server and triggerer keep current (a worker binding a process).
    :raises StoreUnavailableError: the database cannot be opened.
    """

    def __init__(
        self, url: str, *, pool_size: int = 5, idle_timeout: float | None = None, migrate: bool = True
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgresql = parsed.get_backend_name() == "postgresql"
        self.sqlite_file: SqliteFileGuard | None = None
        try:
            in_memory = self.is_sqlite and parsed.database in (None, "", ":memory:")
            if self.is_sqlite and not in_memory and not parsed.query.get("uri"):
                Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
                self.sqlite_file = SqliteFileGuard(Path(str(parsed.database)))  # 0600, never written once gone
            # hide_parameters: errors must not carry event bodies (EDR tokens) into logs
            pooling = {} if in_memory else {"pool_size": pool_size, "max_overflow": 8}
            self.engine: Engine = create_engine(url, pool_pre_ping=not self.is_sqlite, hide_parameters=True, **pooling)
            if self.is_sqlite:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            if self.sqlite_file is not None:
                self.sqlite_file.install(self.engine)
            if idle_timeout is not None and not in_memory:
                _IdleConnectionCloser(self.engine, idle_timeout)
            self.migrated = migrate
            if migrate:
                upgrade(self.engine)
        except (SQLAlchemyError, OSError) as err:
            raise StoreUnavailableError(f"Cannot open the callback event store {self!r}: {err}") from err
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"EventStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    def _insert(self) -> Any:
        return sqlite_insert if self.is_sqlite else pg_insert

    def record(
        self,
        envelope: EventEnvelope,
        body: dict[str, Any],
        *,
        correlation_id: str | None,
        route: str = "dynamic",
    ) -> bool:
        """Store an event durably, once per envelope id; a stored event never changes afterwards.

        :param envelope: the validated envelope.
        :param body: the envelope as received (stored verbatim, with the SHA-256 of its canonical JSON).
        :param correlation_id: the correlation id of the callback token it arrived on, if any.
        :param route: ``dynamic`` or ``static:<name>``. A delivery of the same body by a new route adds the
            route to the stored event; its correlation id stays the one it was first stored with.
        :returns: ``True`` if the event is new, ``False`` for a duplicate (same envelope id, same body).
        :raises ProcessBoundElsewhereError: ``correlation_id`` is given and the event's process is bound
            to another correlation id (nothing is stored).
        :raises EventConflictError: an event with this envelope id and another body is stored (nothing
            changes).
        :raises ValueError: the database refused one of its values (it is not stored).
        :raises StoreUnavailableError: the write failed.
        """
        process_id = envelope.process_id
        digest = body_sha256(body)
        values = {
            "envelope_id": envelope.id,
            "event_type": envelope.type,
            "process_id": process_id,
            "correlation_id": correlation_id,
            "event_at": envelope.at,
            "received_at": int(time.time() * 1000),
            "routes": route,
            "body": body,
            "body_sha256": digest,
        }
        stmt = self._insert()(CallbackEventRow).values(**values).on_conflict_do_nothing(index_elements=["envelope_id"])
        try:
            with self._sessions.begin() as session:
                if correlation_id is not None and process_id is not None:
                    bound = session.scalar(
                        select(ProcessBindingRow.correlation_id).where(ProcessBindingRow.process_id == process_id)
                    )
                    if bound is not None and bound != correlation_id:
                        raise ProcessBoundElsewhereError(process_id, bound, correlation_id)
                seq = session.execute(stmt.returning(CallbackEventRow.seq)).scalar_one_or_none()
                inserted = seq is not None
                if not inserted:
                    self._add_route(session, envelope.id, route, digest)
                elif self.is_postgresql:  # delivered to every listener when this transaction commits
                    session.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(seq))))
            if self.sqlite_file is not None:  # committed, but into the file every reader opens?
                self.sqlite_file.check()
        except DataError as err:  # the database refused a value, not a fault of the store
            raise ValueError(f"the store cannot hold a value of this event: {type(err.orig).__name__}") from None
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err
        return inserted

    @staticmethod
    def _add_route(session: Session, envelope_id: str, route: str, digest: str) -> None:
        row = session.execute(
            select(CallbackEventRow.routes, CallbackEventRow.body_sha256, CallbackEventRow.body).where(
                CallbackEventRow.envelope_id == envelope_id
            )
        ).one()
        try:
            stored_digest = row.body_sha256 or body_sha256(row.body)  # events stored before revision 0003
        except ValueError:
            stored_digest = None
        if stored_digest != digest:
            raise EventConflictError(envelope_id)
        routes = row.routes.split()
        if route not in routes:
            session.execute(
                update(CallbackEventRow)
                .where(CallbackEventRow.envelope_id == envelope_id)
                .values(routes=" ".join([*routes, route]))
            )

    def bind(self, process_id: str, correlation_id: str) -> str:
        """Bind a process to the task instance that started it; the first binding stays for good.

        The hook calls it when the connector's answer names the transfer process or contract
        negotiation, the waiting trigger again when it starts (see :meth:`hold`; both idempotent). Events
        stored before (callbacks can beat the connector's answer) count from then on, as do later ones.

        :param process_id: the transfer process or contract negotiation id.
        :param correlation_id: the task instance's correlation id (the one in its callback token).
        :returns: the correlation id the process is bound to (``correlation_id`` unless it was bound to
            another one before).
        :raises StoreUnavailableError: the write failed.
        """
        try:
            with self._sessions.begin() as session:
                return str(self._bind(session, process_id, correlation_id))
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def _bind(self, session: Session, process_id: str, correlation_id: str | None) -> str | None:
        """Bind (when ``correlation_id`` is given, if unbound) and return the process's binding."""
        if correlation_id is not None:
            stmt = self._insert()(ProcessBindingRow).values(
                process_id=process_id, correlation_id=correlation_id, bound_at=int(time.time() * 1000)
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["process_id"]))
        return session.scalar(
            select(ProcessBindingRow.correlation_id).where(ProcessBindingRow.process_id == process_id)
        )

    def binding(self, process_id: str) -> str | None:
        """The correlation id ``process_id`` is bound to (see :meth:`bind`), or ``None``.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                return session.scalar(
                    select(ProcessBindingRow.correlation_id).where(ProcessBindingRow.process_id == process_id)
                )
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def mark_taken(self, process_id: str, correlation_id: str) -> bool:
        """Record that a try of the task instance ``correlation_id`` took the result of ``process_id``
        (its task succeeded on it); a retry or a later clear then starts a new process.

        :returns: whether a binding of ``process_id`` to ``correlation_id`` was found (and marked).
        :raises StoreUnavailableError: the write failed.
        """
        try:
            with self._sessions.begin() as session:
                result = session.execute(
                    update(ProcessBindingRow)
                    .where(
                        ProcessBindingRow.process_id == process_id,
                        ProcessBindingRow.correlation_id == correlation_id,
                        ProcessBindingRow.taken_at.is_(None),
                    )
                    .values(taken_at=int(time.time() * 1000))
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    return True
                bound = self._bind(session, process_id, None)
                return bound == correlation_id
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def untaken(self, process_id: str, correlation_id: str) -> bool:
        """Whether ``process_id`` is bound to ``correlation_id`` and no try of that task took its result
        (see :meth:`mark_taken`). A process the store does not know counts as taken.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                row = session.execute(
                    select(ProcessBindingRow.correlation_id, ProcessBindingRow.taken_at).where(
                        ProcessBindingRow.process_id == process_id
                    )
                ).first()
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err
        return row is not None and row[0] == correlation_id and row[1] is None

    def events(
        self,
        *,
        correlation_id: str | None = None,
        process_id: str | None = None,
        after_seq: int = 0,
        since: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        envelope_ids: Sequence[str] | None = None,
    ) -> list[StoredEvent]:
        """Events matching the correlation id OR the process id (all events if neither), oldest first.

        :param envelope_ids: only events with one of these envelope ids.
        :param after_seq: only events stored after this ``seq``.
        :param since: only events received at or after this time (epoch milliseconds).
        :param limit: at most this many: the oldest, or with ``newest_first`` the newest.
        :param newest_first: newest first instead.

        :raises StoreUnavailableError: the read failed.
        """
        stmt = select(CallbackEventRow).where(CallbackEventRow.seq > after_seq)
        if since is not None:
            stmt = stmt.where(CallbackEventRow.received_at >= since)
        if envelope_ids is not None:
            stmt = stmt.where(CallbackEventRow.envelope_id.in_(list(envelope_ids)))
        filters = []
        if correlation_id is not None:
            filters.append(CallbackEventRow.correlation_id == correlation_id)
        if process_id is not None:
            filters.append(CallbackEventRow.process_id == process_id)
        if filters:
            stmt = stmt.where(or_(*filters))
        stmt = stmt.order_by(CallbackEventRow.seq.desc() if newest_first else CallbackEventRow.seq)
        if limit is not None:
            stmt = stmt.limit(limit)
        try:
            with self._sessions() as session:
                return [StoredEvent.from_row(row) for row in session.scalars(stmt)]
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def max_seq(self) -> int:
        """The ``seq`` of the newest stored event, 0 when empty.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                return int(session.scalar(select(func.coalesce(func.max(CallbackEventRow.seq), 0))) or 0)
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def purge(self, older_than: timedelta) -> int:
        """Delete events received more than ``older_than`` ago; returns how many were deleted.

        Events of a process or correlation id a waiting trigger holds (:meth:`hold`, renewed within
        ``older_than``) are kept. Stale holds, what event triggers fired for deleted events, and bindings
        older than ``older_than`` of processes with no event left and no hold go too, as do EDR refresh
        locks whose lease ended more than ``older_than`` ago (left by crashed holders).

        :raises StoreUnavailableError: the delete failed.
        """
        cutoff = int((time.time() - older_than.total_seconds()) * 1000)
        hold, event = TriggerHoldRow, CallbackEventRow
        live = hold.renewed_at >= cutoff
        held_processes = select(hold.process_id).where(live, hold.process_id.is_not(None))
        held_correlations = select(hold.correlation_id).where(live, hold.correlation_id.is_not(None))
        stmt = delete(event).where(
            event.received_at < cutoff,
            or_(event.process_id.is_(None), event.process_id.not_in(held_processes)),
            or_(event.correlation_id.is_(None), event.correlation_id.not_in(held_correlations)),
        )
        try:
            with self._sessions.begin() as session:
                result = session.execute(stmt)
                session.execute(delete(hold).where(hold.renewed_at < cutoff))
                session.execute(delete(EdrRefreshLockRow).where(EdrRefreshLockRow.expires_at < cutoff))
                session.execute(delete(TriggerFiredRow).where(TriggerFiredRow.seq.not_in(select(event.seq))))
                kept = select(event.process_id).where(event.process_id.is_not(None))
                session.execute(
                    delete(ProcessBindingRow).where(
                        ProcessBindingRow.bound_at < cutoff,
                        ProcessBindingRow.process_id.not_in(kept),
                        ProcessBindingRow.process_id.not_in(held_processes),
                    )
                )
                return int(getattr(result, "rowcount", 0) or 0)
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot purge the callback event store: {err}") from err

    def hold(
        self, holder: str, *, process_id: str | None, correlation_id: str | None, bind: bool = False
    ) -> str | None:
        """Record (or renew) that ``holder`` waits for these events, so retention keeps them.

        :param bind: also, in the same transaction, bind ``process_id`` to ``correlation_id`` (when both
            are given; see :meth:`bind`) and read the binding of ``process_id``: one write for a trigger
            that starts waiting.
        :returns: with ``bind``, the correlation id ``process_id`` is bound to (``None`` while unbound);
            else ``None``.
        :raises StoreUnavailableError: the write failed.
        """
        now = int(time.time() * 1000)
        values = {"holder": holder, "process_id": process_id, "correlation_id": correlation_id, "renewed_at": now}
        stmt = self._insert()(TriggerHoldRow).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["holder"], set_={"renewed_at": now})
        try:
            with self._sessions.begin() as session:
                session.execute(stmt)
                if bind and process_id is not None:
                    return self._bind(session, process_id, correlation_id)
                return None
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def release(self, holder: str) -> None:
        """Drop ``holder``'s hold (its trigger is done).

        :raises StoreUnavailableError: the write failed.
        """
        try:
            with self._sessions.begin() as session:
                session.execute(delete(TriggerHoldRow).where(TriggerHoldRow.holder == holder))
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def holds(self) -> list[tuple[str, str | None, str | None, int]]:
        """Every hold: ``(holder, process_id, correlation_id, renewed_at epoch ms)``.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                rows = session.execute(select(TriggerHoldRow).order_by(TriggerHoldRow.renewed_at)).scalars()
                return [(r.holder, r.process_id, r.correlation_id, r.renewed_at) for r in rows]
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def cursor(self, name: str) -> int | None:
        """The saved cursor (a ``seq``) of the event trigger ``name``, or ``None``.

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                return session.scalar(select(TriggerCursorRow.seq).where(TriggerCursorRow.name == name))
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def cursor_start(self, name: str) -> int:
        """The ``seq`` the event trigger ``name`` first started from (0 when unknown).

        :raises StoreUnavailableError: the read failed.
        """
        try:
            with self._sessions() as session:
                start = session.scalar(select(TriggerCursorRow.start_seq).where(TriggerCursorRow.name == name))
                return int(start or 0)
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot read the callback event store: {err}") from err

    def claim(self, name: str, stored: StoredEvent) -> bool:
        """Advance the cursor of ``name`` to ``stored`` (never back) and claim its (process id, event type)
        in one commit.

        An event about no process (``AssetCreated``...) is claimed by its envelope id instead.

        :returns: ``True`` the first time this (process id, event type) is claimed by ``name``,
            ``False`` for a repeat (EDC can publish one state change twice, with two envelope ids).
        :raises StoreUnavailableError: the write failed.
        """
        key = stored.process_id or f"envelope:{stored.envelope_id}"
        fired = self._insert()(TriggerFiredRow).values(
            name=name, process_id=key, event_type=stored.event_type, seq=stored.seq
        )
        cursor = self._insert()(TriggerCursorRow).values(name=name, seq=stored.seq, start_seq=stored.seq)
        forward = case((TriggerCursorRow.seq < stored.seq, stored.seq), else_=TriggerCursorRow.seq)
        cursor = cursor.on_conflict_do_update(index_elements=["name"], set_={"seq": forward})
        try:
            with self._sessions.begin() as session:
                claimed = session.execute(fired.on_conflict_do_nothing().returning(TriggerFiredRow.seq)).first()
                session.execute(cursor)
                return claimed is not None
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def set_cursor(self, name: str, seq: int) -> None:
        """Save the cursor of the event trigger ``name`` (the first save is also its start, see
        :meth:`cursor_start`).

        :raises StoreUnavailableError: the write failed.
        """
        stmt = self._insert()(TriggerCursorRow).values(name=name, seq=seq, start_seq=seq)
        try:
            with self._sessions.begin() as session:
                session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": seq}))
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def try_lock_edr_refresh(self, process_id: str, holder: str, lease: float) -> bool:
        """Take the EDR refresh lock of ``process_id`` for ``holder`` unless someone else holds it.

        One statement on both databases: insert the lock, or take over a lock whose lease has run out
        (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now``); the row comes back only when
        this holder got it. A holder may take its own lock again (the lease is renewed).

        :param process_id: the transfer process id.
        :param holder: a unique id of the caller (e.g. a UUID per attempt).
        :param lease: seconds the lock holds without a release (a crashed holder blocks no longer).
        :returns: whether ``holder`` holds the lock now.
        :raises StoreUnavailableError: the write failed.
        """
        now = int(time.time() * 1000)
        expires_at = now + int(lease * 1000)
        lock = EdrRefreshLockRow
        stmt = self._insert()(lock).values(process_id=process_id, holder=holder, expires_at=expires_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["process_id"],
            set_={"holder": holder, "expires_at": expires_at},
            where=or_(lock.expires_at < now, lock.holder == holder),
        )
        try:
            with self._sessions.begin() as session:
                return session.execute(stmt.returning(lock.holder)).first() is not None
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def unlock_edr_refresh(self, process_id: str, holder: str) -> None:
        """Release ``holder``'s EDR refresh lock of ``process_id`` (nothing when another holder has it).

        :raises StoreUnavailableError: the write failed.
        """
        lock = EdrRefreshLockRow
        try:
            with self._sessions.begin() as session:
                session.execute(delete(lock).where(lock.process_id == process_id, lock.holder == holder))
        except SQLAlchemyError as err:
            raise StoreUnavailableError(f"Cannot write to the callback event store: {err}") from err

    def ping(self) -> None:
        """Check the database answers.

        :raises StoreUnavailableError: it does not.
        """
        self.max_seq()

    def dispose(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()


_stores: dict[tuple[int, str, bool], EventStore] = {}
_stores_lock = threading.Lock()


WAITING_IDLE_TIMEOUT = 10.0
"""Seconds after which the store of waiting triggers closes its idle connections. A trigger reads the
store when it starts and renews its hold hourly; between those, the only connection of a waiting process
is the listener's. Thousands of triggers starting at once (a triggerer restart) share a small pool."""


def get_store(url: str | None = None, *, waiting: bool = False, migrate: bool = True) -> EventStore:
    """The process-wide :class:`EventStore` for ``url`` (default: ``[edc_callbacks] store_url``).

    One per process, URL and use, re-created after a fork. ``waiting`` is the store of processes that
    wait for events (triggerers, workers): a pool of one that closes its idle connections after
    :data:`WAITING_IDLE_TIMEOUT` seconds, so thousands of waiting triggers cost one connection per
    process while idle, the listener's; receivers keep a pool of five for bursts of callbacks.
    """
    if url is None:
        from airflow_edc_callbacks.config import get_store_url

        url = get_store_url()
    key = (os.getpid(), url, waiting)
    with _stores_lock:
        store = _stores.get(key)
        if store is not None and migrate and not store.migrated:  # opened without Alembic before
            try:
                upgrade(store.engine)
            except SQLAlchemyError as err:
                raise StoreUnavailableError(f"Cannot open the callback event store {store!r}: {err}") from err
            store.migrated = True
        if store is None:
            if waiting:
                store = EventStore(url, pool_size=1, idle_timeout=WAITING_IDLE_TIMEOUT, migrate=migrate)
            else:
                store = EventStore(url, pool_size=5)
            _stores[key] = store
        return store
