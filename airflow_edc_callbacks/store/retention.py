"""Retention: deleting old events, and with them what nothing refers to any more."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import delete, or_, select

from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.tables import (
    CallbackEventRow,
    EdrRefreshLockRow,
    ProcessBindingRow,
    TriggerFiredRow,
    TriggerHoldRow,
)


class Retention(StoreBase):
    """The purge the receiver runs periodically (and ``airflow-edc-callbacks purge``)."""

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
        with self._writing("Cannot purge the callback event store") as session:
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

    def forget(self, envelope_id: str) -> int:
        """Delete the event ``envelope_id`` now, and what event triggers fired for it; returns how many
        events were deleted (0 or 1). For an event that is nobody's: the self-test event of
        ``airflow-edc-callbacks doctor``, which no task waits for.

        :raises StoreUnavailableError: the delete failed.
        """
        event = CallbackEventRow
        seqs = select(event.seq).where(event.envelope_id == envelope_id)
        with self._writing("Cannot delete from the callback event store") as session:
            session.execute(delete(TriggerFiredRow).where(TriggerFiredRow.seq.in_(seqs)))
            result = session.execute(delete(event).where(event.envelope_id == envelope_id))
            return int(getattr(result, "rowcount", 0) or 0)
