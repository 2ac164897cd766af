"""StoreListener: one connection wakes every subscriber; subscriptions, purges, each event dispatched once
(both stores)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from airflow_edc_callbacks.store import EventStore, StoreListener
from tests.helpers import envelope, record_event


async def test_listener_wakes_subscribers_from_one_connection(store_url: str) -> None:
    from sqlalchemy import event

    writer = EventStore(store_url)  # another process's connection pool, as the receiver would have
    reader = EventStore(store_url)
    fetches: list[str] = []
    event.listen(
        reader.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: fetches.append(statement) if "FROM edc_callback_event" in statement else None,
    )
    listener = StoreListener(reader, poll_interval=0.02).start()
    try:
        subs = [listener.subscribe(correlation_id=f"c{i}", process_ids=[f"tp-{i}"]) for i in range(200)]
        assert listener.subscription_count == 200
        await asyncio.to_thread(record_event, writer, envelope("TransferProcessCompleted", "tp-7"), None)
        await asyncio.to_thread(record_event, writer, envelope("TransferProcessStarted", "tp-x"), "c9")
        got7 = await subs[7].wait(timeout=5)
        got9 = await subs[9].wait(timeout=5)
        assert [e.process_id for e in got7] == ["tp-7"]
        assert [e.correlation_id for e in got9] == ["c9"]
        assert subs[8].drain() == []
        assert listener.wakeups == 2
        # 200 waiting subscriptions cost one connection and one fetch per change, not one per subscription
        assert reader.engine.pool.checkedout() == 1
        assert 1 <= len(fetches) <= 4, fetches
        for sub in subs:
            sub.close()
        assert listener.subscription_count == 0
    finally:
        listener.stop()
        writer.dispose()
        reader.dispose()


async def test_listener_subscription_learns_process_id_later(store: EventStore) -> None:
    listener = StoreListener(store, poll_interval=0.02).start()
    try:
        sub = listener.subscribe(correlation_id="c1")
        sub.add_process_id("tp-late")
        await asyncio.to_thread(record_event, store, envelope("TransferProcessCompleted", "tp-late"), None)
        assert [e.process_id for e in await sub.wait(timeout=5)] == ["tp-late"]
        assert await sub.wait(timeout=0.05) == []
    finally:
        listener.stop()


async def test_listener_keeps_dispatching_after_a_purge(store: EventStore) -> None:
    """Purged ids are never reused (AUTOINCREMENT), so the listener's cursor stays valid."""
    for i in range(3):
        record_event(store, envelope(process_id=f"old-{i}"))
    listener = StoreListener(store, poll_interval=0.02).start()
    try:
        assert store.purge(timedelta(0)) == 3
        sub = listener.subscribe(process_ids=["tp-new"])
        await asyncio.to_thread(record_event, store, envelope("TransferProcessCompleted", "tp-new"), None)
        got = await sub.wait(timeout=5)
        assert [e.process_id for e in got] == ["tp-new"]
        assert got[0].seq == 4
    finally:
        listener.stop()


async def test_listener_dispatches_each_event_once(store: EventStore) -> None:
    """SQLite's cursor on ``seq`` and PostgreSQL's NOTIFY (the listener's only two modes) hand each stored
    event to a subscription once."""
    listener = StoreListener(store, poll_interval=0.02).start()
    try:
        sub = listener.subscribe(process_ids=["tp-w"])
        await asyncio.to_thread(record_event, store, envelope("TransferProcessStarted", "tp-w"), None)
        first = await sub.wait(timeout=5)
        await asyncio.to_thread(record_event, store, envelope("TransferProcessCompleted", "tp-w"), None)
        second = await sub.wait(timeout=5)
        assert [e.event_type for e in first + second] == ["TransferProcessStarted", "TransferProcessCompleted"]
        assert await sub.wait(timeout=0.2) == []  # nothing is delivered twice
    finally:
        listener.stop()


async def test_subscribe_requires_a_started_listener(store: EventStore) -> None:
    with pytest.raises(RuntimeError, match="start"):
        StoreListener(store).subscribe(process_ids=["x"])
