"""The receiver's retention: a background loop, run for the app's lifespan, that purges old events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.concurrency import run_in_threadpool

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.receiver.settings import ReceiverSettings

log = logging.getLogger(__name__)


def _purge(cfg: ReceiverSettings, retention: timedelta) -> int:
    return cfg.store.purge(retention)


async def purge_periodically(cfg: ReceiverSettings, retention: timedelta, interval: float) -> None:
    """Purge events older than ``retention`` now and every ``interval`` seconds, until cancelled (see
    :meth:`~airflow_edc_callbacks.store.EventStore.purge`). A store that is unavailable is tried again
    at the next interval; purged events are counted in the metric ``store.purged``."""
    while True:
        try:
            purged = await run_in_threadpool(_purge, cfg, retention)
        except StoreUnavailableError as err:
            log.warning("Retention: the event store is unavailable (%s); next try in %.0f s", err, interval)
        else:
            if purged:
                log.info("Retention: purged %d events older than %s", purged, retention)
                metrics.incr("store.purged", purged)
        await asyncio.sleep(interval)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Retention stopped: %r", task.exception())


@contextlib.asynccontextmanager
async def retention_running(cfg: ReceiverSettings) -> AsyncIterator[asyncio.Task[None] | None]:
    """Run :func:`purge_periodically` while in the block (the app's lifespan); yields its task, or ``None``
    when ``purge_interval`` is 0 or the retention configuration is malformed (logged, not raised: an
    api-server must start without it; the receiver's answers report the configuration error)."""
    try:
        cfg.resolve_retention()
    except ValueError as err:
        log.error("Retention off: %s", err)
        yield None
        return
    if not cfg.purge_interval or cfg.retention is None:
        yield None
        return
    task = asyncio.get_running_loop().create_task(
        purge_periodically(cfg, cfg.retention, cfg.purge_interval), name="edc-callbacks-retention"
    )
    task.add_done_callback(_log_crash)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
