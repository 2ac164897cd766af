"""The callback events themselves: stored once per envelope id, never changed, read by id or process."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Text, bindparam, func, or_, select, update
from sqlalchemy.exc import DataError, SQLAlchemyError

from airflow_edc_callbacks.exceptions import EventConflictError, ProcessBoundElsewhereError, StoreUnavailableError
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.stored import StoredEvent, body_sha256
from airflow_edc_callbacks.store.tables import CallbackEventRow, ProcessBindingRow

NOTIFY_CHANNEL = "edc_callback_events"
"""PostgreSQL: the channel each new event's ``seq`` is sent on (``pg_notify``) when its insert commits."""

LOOKBACK_MS = 60_000
"""PostgreSQL: how long (milliseconds) after the receiver read its clock for an event's ``received_at`` the
event's insert may still commit. PostgreSQL hands out ``seq`` at the insert, not at the commit, so a lower
``seq`` can commit after a higher one was read; whoever reads by ``seq`` (the listener after a
reconnect, an event trigger's cursor) also re-reads the events received this long before the moment it
may have missed a commit from. :meth:`EventLog.record_many` reads the clock once it holds its connection,
then runs a few short statements and commits: well within this."""


ID_CHUNK = 500
"""At most this many envelope ids in one ``IN`` list (drivers limit a statement's parameters)."""

MAX_GROUP = ID_CHUNK
"""At most this many events in one :meth:`EventLog.record_many` call."""

_EVENTS = CallbackEventRow.__table__
_BINDINGS = select(ProcessBindingRow.process_id, ProcessBindingRow.correlation_id).where(
    ProcessBindingRow.process_id.in_(bindparam("process_ids", expanding=True))
)


@dataclass(frozen=True)
class NewEvent:
    """A callback event to store (see :meth:`EventLog.record_many`).

    :ivar envelope: the validated envelope.
    :ivar body: the envelope as received (stored verbatim, with the SHA-256 of its canonical JSON).
    :ivar correlation_id: the correlation id of the callback token it arrived on, ``None`` for a static route.
    :ivar route: ``dynamic`` or ``static:<name>``.
    """

    envelope: EventEnvelope
    body: dict[str, Any]
    correlation_id: str | None
    route: str = "dynamic"


RecordOutcome = bool | Exception
"""What became of one event of :meth:`EventLog.record_many`: ``True`` (stored now), ``False`` (a duplicate),
or the exception :meth:`EventLog.record` raises for it."""


class EventLog(StoreBase):
    """Writes and reads of the callback events."""

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
        [outcome] = self.record_many([NewEvent(envelope, body, correlation_id, route)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def record_many(self, events: Sequence[NewEvent]) -> list[RecordOutcome]:
        """Store events durably in one transaction (a group commit), each as :meth:`record` stores it alone.

        The events are taken in order, as if :meth:`record` stored them one after the other: the first
        delivery of an envelope id inserts it, a later one in the same call is its duplicate (or conflict).
        One transaction reads the bindings of their processes, inserts the new events in one
        ``INSERT ... ON CONFLICT DO NOTHING`` (executemany; on PostgreSQL it notifies the listeners too) and
        compares the duplicates; nothing is durable before its commit, and every event's outcome is known only then.

        :param events: at most :data:`MAX_GROUP` events.
        :returns: one outcome per event, in order: ``True`` (stored now), ``False`` (a duplicate), or the
            exception :meth:`record` raises for it.
            :class:`~airflow_edc_callbacks.exceptions.ProcessBoundElsewhereError`,
            :class:`~airflow_edc_callbacks.exceptions.EventConflictError` and :class:`ValueError` concern that
            event alone (the others are stored: a value the database refuses rolls the transaction back, and
            each event is then stored alone); a
            :class:`~airflow_edc_callbacks.exceptions.StoreUnavailableError` is every event's (but those
            refused by a :class:`ValueError` before the transaction): the transaction failed, none is stored.
        :raises ValueError: more than :data:`MAX_GROUP` events.
        """
        if len(events) > MAX_GROUP:
            raise ValueError(f"at most {MAX_GROUP} events in one group, not {len(events)}")
        outcomes: list[RecordOutcome | None] = [None] * len(events)
        digests: dict[int, str] = {}
        for i, event in enumerate(events):
            try:
                digests[i] = body_sha256(event.body)
            except ValueError as err:
                outcomes[i] = err
        try:
            if digests:
                self._record_together(events, digests, outcomes)
            if self.sqlite_file is not None:  # committed, but into the file every reader opens?
                self.sqlite_file.check()
        except (DataError, ValueError, OverflowError, RecursionError) as err:  # a value refused, not a store fault
            if len(digests) > 1:  # whose? each stored alone: only that event is refused
                return [
                    self.record_many([event])[0] if i in digests else outcomes[i] or err
                    for i, event in enumerate(events)
                ]
            refused = err
            if isinstance(err, DataError):
                refused = ValueError(f"the store cannot hold a value of this event: {type(err.orig).__name__}")
            return [refused if i in digests else outcomes[i] or refused for i in range(len(events))]
        except (SQLAlchemyError, StoreUnavailableError) as err:
            fault = err
            if not isinstance(err, StoreUnavailableError):
                fault = StoreUnavailableError(f"Cannot write to the callback event store: {err}")
                fault.__cause__ = err
            return [fault if i in digests else outcomes[i] or fault for i in range(len(events))]
        return cast("list[RecordOutcome]", outcomes)  # every event has its outcome now

    @functools.cached_property
    def _insert_events(self) -> Any:
        """``INSERT ... ON CONFLICT (envelope_id) DO NOTHING RETURNING envelope_id, seq``, built once.

        On PostgreSQL each inserted row also sends its ``seq`` on :data:`NOTIFY_CHANNEL` (``pg_notify`` in the
        ``RETURNING`` list, evaluated for inserted rows only): delivered to every listener when the transaction
        commits, with no statement of its own.
        """
        stmt = self._insert()(_EVENTS).on_conflict_do_nothing(index_elements=["envelope_id"])
        returned: list[Any] = [_EVENTS.c.envelope_id, _EVENTS.c.seq]
        if self.is_postgresql:
            returned.append(func.pg_notify(NOTIFY_CHANNEL, _EVENTS.c.seq.cast(Text)))
        return stmt.returning(*returned)

    def _record_together(
        self, events: Sequence[NewEvent], digests: dict[int, str], outcomes: list[RecordOutcome | None]
    ) -> None:
        """One transaction for the events of ``digests`` (index -> body digest); fills their ``outcomes``.

        :raises SQLAlchemyError: a statement or the commit failed (rolled back).
        """
        with self.engine.begin() as conn:
            received_at = int(time.time() * 1000)  # the pool's wait is over before the clock is read (LOOKBACK_MS)
            bindings = self._bindings(
                conn, {events[i].envelope.process_id for i in digests if events[i].correlation_id}
            )
            rows: list[dict[str, Any]] = []
            first: dict[str, int] = {}  # envelope id -> the index of its first delivery in this group
            for i in digests:
                event = events[i]
                envelope = event.envelope
                process_id = envelope.process_id
                bound = bindings.get(process_id) if process_id is not None else None
                if (
                    event.correlation_id is not None
                    and process_id is not None
                    and bound not in (None, event.correlation_id)
                ):
                    outcomes[i] = ProcessBoundElsewhereError(process_id, str(bound), event.correlation_id)
                    continue
                if envelope.id in first:  # a second delivery within this group: compared once the first is in
                    continue
                first[envelope.id] = i
                rows.append(
                    {
                        "envelope_id": envelope.id,
                        "event_type": envelope.type,
                        "process_id": process_id,
                        "correlation_id": event.correlation_id,
                        "event_at": envelope.at,
                        "received_at": received_at,
                        "routes": event.route,
                        "body": event.body,
                        "body_sha256": digests[i],
                    }
                )
            inserted: dict[str, int] = {}
            # rows and routes in envelope id order: two groups that share envelopes lock them in the same
            # order, so concurrent group commits cannot deadlock (a serial sender has one event per group)
            rows.sort(key=lambda row: str(row["envelope_id"]))
            if rows:
                inserted = {row.envelope_id: row.seq for row in conn.execute(self._insert_events, rows)}
            for i in sorted(digests, key=lambda i: events[i].envelope.id):
                envelope_id = events[i].envelope.id
                if outcomes[i] is not None:
                    continue
                if first[envelope_id] == i and envelope_id in inserted:
                    outcomes[i] = True
                    continue
                try:
                    self._add_route(conn, envelope_id, events[i].route, digests[i])
                    outcomes[i] = False
                except EventConflictError as err:
                    outcomes[i] = err

    @staticmethod
    def _bindings(conn: Connection, process_ids: set[str | None]) -> dict[str, str]:
        """The correlation ids these processes are bound to (unbound ones are missing)."""
        wanted = sorted(p for p in process_ids if p is not None)
        if not wanted:
            return {}
        return {row.process_id: row.correlation_id for row in conn.execute(_BINDINGS, {"process_ids": wanted})}

    @staticmethod
    def _add_route(conn: Connection, envelope_id: str, route: str, digest: str) -> None:
        row = conn.execute(
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
            conn.execute(
                update(CallbackEventRow)
                .where(CallbackEventRow.envelope_id == envelope_id)
                .values(routes=" ".join([*routes, route]))
            )

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
        with self._reading() as session:
            return [StoredEvent.from_row(row) for row in session.scalars(stmt)]

    def statically_delivered(self, envelope_ids: Sequence[str]) -> list[str]:
        """Of ``envelope_ids``, those a static callback route delivered too (a ``static:<name>`` route), read
        without their bodies and in chunks of :data:`ID_CHUNK` ids: what an event trigger asks every half
        second about the events waiting for their static copy, however many a token's holder posted.

        :raises StoreUnavailableError: the read failed.
        """
        ids = list(envelope_ids)
        found: list[str] = []
        with self._reading() as session:
            for start in range(0, len(ids), ID_CHUNK):
                stmt = select(CallbackEventRow.envelope_id).where(
                    CallbackEventRow.envelope_id.in_(ids[start : start + ID_CHUNK]),
                    or_(CallbackEventRow.correlation_id.is_(None), CallbackEventRow.routes.contains("static:")),
                )
                found.extend(session.scalars(stmt))
        return found

    def max_seq(self) -> int:
        """The ``seq`` of the newest stored event, 0 when empty.

        :raises StoreUnavailableError: the read failed.
        """
        with self._reading() as session:
            return int(session.scalar(select(func.coalesce(func.max(CallbackEventRow.seq), 0))) or 0)

    def ping(self) -> None:
        """Check the database answers.

        :raises StoreUnavailableError: it does not.
        """
        self.max_seq()
