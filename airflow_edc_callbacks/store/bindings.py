"""Which task instance started a process (bindings), and which waiting triggers keep events (holds)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.tables import ProcessBindingRow, TriggerHoldRow


def bound_correlation(session: Session, process_id: str) -> str | None:
    """The correlation id ``process_id`` is bound to, read in ``session``; ``None`` while unbound."""
    return session.scalar(select(ProcessBindingRow.correlation_id).where(ProcessBindingRow.process_id == process_id))


class Bindings(StoreBase):
    """Process bindings (the trust rule's anchor) and the holds of waiting triggers."""

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
        with self._writing() as session:
            return str(self._bind(session, process_id, correlation_id))

    def _bind(self, session: Session, process_id: str, correlation_id: str | None) -> str | None:
        """Bind (when ``correlation_id`` is given, if unbound) and return the process's binding."""
        if correlation_id is not None:
            stmt = self._insert()(ProcessBindingRow).values(
                process_id=process_id, correlation_id=correlation_id, bound_at=int(time.time() * 1000)
            )
            session.execute(stmt.on_conflict_do_nothing(index_elements=["process_id"]))
        return bound_correlation(session, process_id)

    def binding(self, process_id: str) -> str | None:
        """The correlation id ``process_id`` is bound to (see :meth:`bind`), or ``None``.

        :raises StoreUnavailableError: the read failed.
        """
        with self._reading() as session:
            return bound_correlation(session, process_id)

    def bound_to(self, correlation_id: str) -> list[str]:
        """The processes bound to ``correlation_id`` (one task instance's transfers and negotiations, of
        every try), in the order they were bound.

        :raises StoreUnavailableError: the read failed.
        """
        stmt = (
            select(ProcessBindingRow.process_id)
            .where(ProcessBindingRow.correlation_id == correlation_id)
            .order_by(ProcessBindingRow.bound_at, ProcessBindingRow.process_id)
        )
        with self._reading() as session:
            return list(session.scalars(stmt))

    def mark_taken(self, process_id: str, correlation_id: str) -> bool:
        """Record that a try of the task instance ``correlation_id`` took the result of ``process_id``
        (its task succeeded on it); a retry or a later clear then starts a new process.

        :returns: whether ``process_id`` is bound to ``correlation_id`` (and is now marked taken).
        :raises StoreUnavailableError: the write failed.
        """
        with self._writing() as session:
            session.execute(
                update(ProcessBindingRow)
                .where(
                    ProcessBindingRow.process_id == process_id,
                    ProcessBindingRow.correlation_id == correlation_id,
                    ProcessBindingRow.taken_at.is_(None),
                )
                .values(taken_at=int(time.time() * 1000))
            )
            return bound_correlation(session, process_id) == correlation_id

    def untaken(self, process_id: str, correlation_id: str) -> bool:
        """Whether ``process_id`` is bound to ``correlation_id`` and no try of that task took its result
        (see :meth:`mark_taken`). A process the store does not know counts as taken.

        :raises StoreUnavailableError: the read failed.
        """
        with self._reading() as session:
            row = session.execute(
                select(ProcessBindingRow.correlation_id, ProcessBindingRow.taken_at).where(
                    ProcessBindingRow.process_id == process_id
                )
            ).first()
        return row is not None and row[0] == correlation_id and row[1] is None

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
        values: dict[str, Any] = {
            "holder": holder,
            "process_id": process_id,
            "correlation_id": correlation_id,
            "renewed_at": now,
        }
        stmt = self._insert()(TriggerHoldRow).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["holder"], set_={"renewed_at": now})
        with self._writing() as session:
            session.execute(stmt)
            if bind and process_id is not None:
                return self._bind(session, process_id, correlation_id)
            return None

    def release(self, holder: str) -> None:
        """Drop ``holder``'s hold (its trigger is done).

        :raises StoreUnavailableError: the write failed.
        """
        with self._writing() as session:
            session.execute(delete(TriggerHoldRow).where(TriggerHoldRow.holder == holder))

    def holds(self) -> list[tuple[str, str | None, str | None, int]]:
        """Every hold: ``(holder, process_id, correlation_id, renewed_at epoch ms)``.

        :raises StoreUnavailableError: the read failed.
        """
        with self._reading() as session:
            rows = session.execute(select(TriggerHoldRow).order_by(TriggerHoldRow.renewed_at)).scalars()
            return [(r.holder, r.process_id, r.correlation_id, r.renewed_at) for r in rows]
