"""``Hold``: a waiting trigger's hold on its process's events, which retention honours."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.store import EventStore

Log = logging.Logger | Any


class Hold:
    """A waiter's hold on its process's events: retention keeps held events (renewed every hour).

    A hold write runs on even if the waiter is cancelled meanwhile; :meth:`release` waits for it first,
    so a release never lands before the hold it releases.
    """

    def __init__(self, process_id: str, correlation_id: str | None, log: Log) -> None:
        self.holder = uuid.uuid4().hex
        self.process_id = process_id
        self.correlation_id = correlation_id
        self.log = log
        self._store: EventStore | None = None
        self._write: asyncio.Future[str | None] | None = None  # the latest hold write

    async def renew(self, store: EventStore, *, bind: bool = False) -> str | None:
        """Write the hold; with ``bind`` (when the wait starts) also bind the process to the correlation id,
        or for a waiter without one (a sensor) read the binding, in the same write.

        :returns: the correlation id the process is bound to, or ``None`` (unbound, or the write failed:
            retention keeps events for days, a missed renewal is harmless and only logged).
        """
        self._store = store
        write = asyncio.to_thread(
            store.hold, self.holder, process_id=self.process_id, correlation_id=self.correlation_id, bind=bind
        )
        self._write = asyncio.ensure_future(write)
        try:
            return await asyncio.shield(self._write)
        except EdcCallbacksError as err:
            self.log.warning("Could not record this trigger's hold on its events: %s", err)
            return None

    async def release(self) -> None:
        """Release the hold, shielded from a cancel; never raises (a hold left behind expires after the
        retention period)."""
        if self._store is None or self._write is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(self._write)
            await asyncio.shield(asyncio.to_thread(self._store.release, self.holder))
