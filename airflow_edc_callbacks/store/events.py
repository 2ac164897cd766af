"""The callback events themselves: stored once per envelope id, never changed, read by id or process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session

from airflow_edc_callbacks.exceptions import EventConflictError, ProcessBoundElsewhereError, StoreUnavailableError
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.bindings import bound_correlation
from airflow_edc_callbacks.store.stored import StoredEvent, body_sha256
from airflow_edc_callbacks.store.tables import CallbackEventRow

NOTIFY_CHANNEL = "edc_callback_events"
"""PostgreSQL: the channel each new event's ``seq`` is sent on (``pg_notify``) when its insert commits."""

LOOKBACK_MS = 60_000
"""PostgreSQL: how long (milliseconds) after the receiver read its clock for an event's ``received_at`` the
event's insert may still commit. PostgreSQL hands out ``seq`` at the insert, not at the commit, so a lower
``seq`` can commit after a higher one was read; whoever reads by ``seq`` (the listener after a
reconnect, an event trigger's cursor) also re-reads the events received this long before the moment it
may have missed a commit from. :meth:`EventLog.record` reads the clock once it holds its connection,
then runs two or three short statements and commits: well within this."""


ID_CHUNK = 500
"""At most this many envelope ids in one ``IN`` list (drivers limit a statement's parameters)."""


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
        process_id = envelope.process_id
        digest = body_sha256(body)
        values = {
            "envelope_id": envelope.id,
            "event_type": envelope.type,
            "process_id": process_id,
            "correlation_id": correlation_id,
            "event_at": envelope.at,
            "routes": route,
            "body": body,
            "body_sha256": digest,
        }
        try:
            with self._sessions.begin() as session:
                session.connection()  # the pool's wait is over before the clock is read (see LOOKBACK_MS)
                stmt = self._insert()(CallbackEventRow).values(**values, received_at=int(time.time() * 1000))
                stmt = stmt.on_conflict_do_nothing(index_elements=["envelope_id"])
                if correlation_id is not None and process_id is not None:
                    bound = bound_correlation(session, process_id)
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
