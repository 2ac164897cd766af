"""EDR refresh locks: one refresh of a transfer's EDR at a time, across tasks, workers and hosts."""

from __future__ import annotations

import time

from sqlalchemy import delete, or_

from airflow_edc_callbacks.store.base import StoreBase
from airflow_edc_callbacks.store.tables import EdrRefreshLockRow


class EdrRefreshLocks(StoreBase):
    """Leased locks, one per transfer process (see :class:`~airflow_edc_callbacks.store.tables.EdrRefreshLockRow`)."""

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
        with self._writing() as session:
            return session.execute(stmt.returning(lock.holder)).first() is not None

    def unlock_edr_refresh(self, process_id: str, holder: str) -> None:
        """Release ``holder``'s EDR refresh lock of ``process_id`` (nothing when another holder has it).

        :raises StoreUnavailableError: the write failed.
        """
        lock = EdrRefreshLockRow
        with self._writing() as session:
            session.execute(delete(lock).where(lock.process_id == process_id, lock.holder == holder))
