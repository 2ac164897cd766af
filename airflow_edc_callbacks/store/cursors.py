"""Event triggers' cursors (``AssetWatcher``): how far each has read, what each fired, what it reads next.

A cursor is a ``seq``. On SQLite writes are serialised, so ``seq`` follows commit order and "every event
after the cursor" is exact. On PostgreSQL ``seq`` is handed out at the insert: with two receivers a lower
``seq`` can commit after a higher one was read and claimed. A running trigger still gets that event (the
listener is notified at its commit); a trigger that starts, or starts again after a store outage, reads
:meth:`WatcherCursors.backlog`: the events after its cursor and the events below it that may have
committed after the cursor passed them. Which of those fired already the store knows (:meth:`claim`
records each), so the trigger fires each (process, event type) once.
"""

from __future__ import annotations

from sqlalchemy import case, func, or_, select

from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.events import LOOKBACK_MS
from airflow_edc_callbacks.store.stored import StoredEvent
from airflow_edc_callbacks.store.tables import CallbackEventRow, TriggerCursorRow, TriggerFiredRow


class WatcherCursors(StoreBase):
    """The cursor and the fired events of each event trigger, by its ``name``."""

    def cursor(self, name: str) -> int | None:
        """The saved cursor (a ``seq``) of the event trigger ``name``, or ``None``.

        :raises StoreUnavailableError: the read failed.
        """
        with self._reading() as session:
            return session.scalar(select(TriggerCursorRow.seq).where(TriggerCursorRow.name == name))

    def set_cursor(self, name: str, seq: int) -> None:
        """Save the cursor of the event trigger ``name`` (the first save is also its start: the
        ``start_seq`` :meth:`backlog` never reaches below).

        :raises StoreUnavailableError: the write failed.
        """
        stmt = self._insert()(TriggerCursorRow).values(name=name, seq=seq, start_seq=seq)
        with self._writing() as session:
            session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": seq}))

    def advance_cursor(self, name: str, seq: int) -> None:
        """Move the cursor of ``name`` forward to ``seq`` (never back): the trigger decided every event it
        was handed up to there, firing or not, so a restart reads from there (:meth:`backlog`).

        :raises StoreUnavailableError: the write failed.
        """
        forward = case((TriggerCursorRow.seq < seq, seq), else_=TriggerCursorRow.seq)
        stmt = self._insert()(TriggerCursorRow).values(name=name, seq=seq, start_seq=seq)
        with self._writing() as session:
            session.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"seq": forward}))

    def claim(self, name: str, stored: StoredEvent, *, cursor: int | None = None) -> bool:
        """Advance the cursor of ``name`` to ``stored`` (never back) and claim its (process id, event type)
        in one commit.

        :param cursor: advance the cursor only this far (default ``stored.seq``): below an event the
            trigger has not decided yet, so that a restart reads that one again.

        An event about no process (``AssetCreated``...) is claimed by its envelope id instead.

        :returns: ``True`` the first time this (process id, event type) is claimed by ``name``,
            ``False`` for a repeat (EDC can publish one state change twice, with two envelope ids).
        :raises StoreUnavailableError: the write failed.
        """
        key = stored.process_id or f"envelope:{stored.envelope_id}"
        fired = self._insert()(TriggerFiredRow).values(
            name=name, process_id=key, event_type=stored.event_type, seq=stored.seq
        )
        to = stored.seq if cursor is None else min(cursor, stored.seq)
        forward = case((TriggerCursorRow.seq < to, to), else_=TriggerCursorRow.seq)
        advance = self._insert()(TriggerCursorRow).values(name=name, seq=to, start_seq=to)
        advance = advance.on_conflict_do_update(index_elements=["name"], set_={"seq": forward})
        with self._writing() as session:
            claimed = session.execute(fired.on_conflict_do_nothing().returning(TriggerFiredRow.seq)).first()
            session.execute(advance)
            return claimed is not None

    def backlog(self, name: str, *, since: int | None = None) -> list[StoredEvent]:
        """The stored events the event trigger ``name`` decides when it (re)starts, oldest first.

        Every event after its cursor; on PostgreSQL also the events below the cursor (down to where the
        trigger first started) that may have committed after the cursor passed them and that ``name``
        did not fire: those received at most :data:`~airflow_edc_callbacks.store.events.LOOKBACK_MS`
        before the cursor's own event. Why that is enough: the cursor's event was received and committed
        before the trigger claimed it, and the trigger was listening from before that claim until it
        stopped; an event it missed committed after it stopped, and was received at most ``LOOKBACK_MS``
        before its commit, so not earlier than ``LOOKBACK_MS`` before the cursor's event. When the
        cursor's event was purged, every event below the cursor that ``name`` did not fire is read (those
        left are few: purging goes by age).

        :param name: the event trigger's name (its cursor, see :meth:`set_cursor`).
        :param since: only events received at or after this time (epoch milliseconds).
        :returns: the events; ``name`` decides each again (an event it fired already is refused by
            :meth:`claim`).
        :raises StoreUnavailableError: the read failed.
        """
        event = CallbackEventRow
        with self._reading() as session:
            row = session.execute(
                select(TriggerCursorRow.seq, TriggerCursorRow.start_seq).where(TriggerCursorRow.name == name)
            ).first()
            cursor, start = (int(row.seq), int(row.start_seq or 0)) if row is not None else (0, 0)
            wanted = event.seq > cursor
            if self.is_postgresql and cursor > start:
                anchor = select(event.received_at).where(event.seq == cursor).scalar_subquery()
                fired = select(TriggerFiredRow.seq).where(TriggerFiredRow.name == name)
                late = (
                    (event.seq > start)
                    & (event.seq <= cursor)
                    & (event.received_at >= func.coalesce(anchor, LOOKBACK_MS) - LOOKBACK_MS)
                    & event.seq.not_in(fired)
                )
                wanted = or_(wanted, late)
            stmt = select(event).where(wanted)
            if since is not None:
                stmt = stmt.where(event.received_at >= since)
            return [StoredEvent.from_row(r) for r in session.scalars(stmt.order_by(event.seq))]
