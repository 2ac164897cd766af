"""What only PostgreSQL does: NOTIFY-driven listeners in several processes, a database restart under
waiting subscribers, and schema migrations run by several processes at once. (Every other store, receiver
and trigger test runs on PostgreSQL too, through the ``store_url`` fixture.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, event, func, insert, inspect, select

from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.store import EventStore, StoreListener
from airflow_edc_callbacks.store.events import NOTIFY_CHANNEL
from airflow_edc_callbacks.store.schema import BASELINE, current_revision, head_revision
from airflow_edc_callbacks.store.stored import body_sha256
from airflow_edc_callbacks.store.tables import Base, CallbackEventRow, TriggerFiredRow
from tests.helpers import envelope, wait_until
from tests.postgres_server import PostgresServer


def _record(store: EventStore, body: dict) -> bool:
    return store.record(EventEnvelope.model_validate(body), body, correlation_id=None)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[EventStore]:
    store = EventStore(pg_url)
    yield store
    store.dispose()


async def test_listeners_in_several_processes_are_notified_and_idle_without_queries(pg_url: str) -> None:
    """Two listeners (as in two triggerers) on one database: an event any receiver stores wakes both,
    by NOTIFY; while nothing arrives, neither runs a single query."""
    writer = EventStore(pg_url)
    readers = [EventStore(pg_url) for _ in range(2)]
    statements: list[str] = []
    for reader in readers:
        event.listen(reader.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    listeners = [StoreListener(reader).start() for reader in readers]
    try:
        assert all(listener.uses_notify for listener in listeners)
        subs = [listener.subscribe(process_ids=["tp-1"]) for listener in listeners]
        statements.clear()
        await asyncio.sleep(1.0)  # idle: measured, not waited for
        assert statements == []
        started = time.monotonic()
        await asyncio.to_thread(_record, writer, envelope("TransferProcessCompleted", "tp-1"))
        got = [await sub.wait(timeout=5) for sub in subs]
        assert [[e.process_id for e in g] for g in got] == [["tp-1"], ["tp-1"]]
        print(f"NOTIFY wake-up of 2 listeners: {1000 * (time.monotonic() - started):.1f} ms")
        assert len(statements) == 2  # one fetch of the notified row per listener
        assert all(reader.engine.pool.checkedout() == 1 for reader in readers)
    finally:
        for listener in listeners:
            listener.stop()
        for store in (writer, *readers):
            store.dispose()


async def test_events_after_a_database_restart_reach_waiting_subscribers(postgres: PostgresServer) -> None:
    """PostgreSQL restarts while subscribers wait: the listener reconnects, LISTENs again and re-reads
    what was stored while it was away; nothing is delivered twice."""
    url = postgres.create_database()
    writer = EventStore(url)
    reader = EventStore(url)
    listener = StoreListener(reader).start()
    try:
        sub = listener.subscribe(process_ids=["tp-r"])
        await asyncio.to_thread(_record, writer, envelope("TransferProcessStarted", "tp-r"))
        assert [e.event_type for e in await sub.wait(timeout=5)] == ["TransferProcessStarted"]

        await asyncio.to_thread(postgres.restart)
        # stored at once after the restart, possibly before the listener is back: found by its catch-up
        await asyncio.to_thread(wait_until, lambda: _try_record(writer, "TransferProcessSuspended"), 30, "a write")
        await asyncio.to_thread(wait_until, lambda: listener.reconnects >= 1, 30, "the listener to reconnect")
        await asyncio.to_thread(_record, writer, envelope("TransferProcessCompleted", "tp-r"))  # by NOTIFY
        got: list[str] = []
        while len(got) < 2:
            batch = await sub.wait(timeout=10)
            assert batch, f"only {got} arrived"
            got += [e.event_type for e in batch]
        assert sorted(got) == ["TransferProcessCompleted", "TransferProcessSuspended"]
        assert await sub.wait(timeout=0.5) == []
    finally:
        listener.stop()
        writer.dispose()
        reader.dispose()


def _try_record(store: EventStore, event_type: str) -> bool:
    from airflow_edc_callbacks.exceptions import StoreUnavailableError

    try:
        return _record(store, envelope(event_type, "tp-r"))
    except StoreUnavailableError:
        return False


def test_schema_is_created_by_migrations_at_head(pg_store: EventStore) -> None:
    assert current_revision(pg_store.engine) == head_revision()
    tables = set(inspect(pg_store.engine).get_table_names())
    assert {"edc_callback_event", "edc_trigger_cursor", "edc_trigger_fired", "edc_callbacks_alembic_version"} <= tables


def test_a_store_created_before_migrations_is_adopted(pg_url: str) -> None:
    """Tables made by ``create_all`` (the package before migrations) are stamped, not created again."""
    engine = create_engine(pg_url)
    baseline = [
        Base.metadata.tables[name] for name in ("edc_callback_event", "edc_trigger_cursor", "edc_trigger_fired")
    ]
    Base.metadata.create_all(engine, tables=baseline)  # what the package created before migrations
    assert current_revision(engine) is None
    store = EventStore(pg_url)
    assert _record(store, envelope("TransferProcessCompleted", "tp-old"))
    assert current_revision(engine) == head_revision() >= BASELINE
    assert "edc_trigger_hold" in inspect(engine).get_table_names()  # and upgraded past the baseline
    store.dispose()
    engine.dispose()


def test_many_processes_upgrade_one_database_at_once(pg_url: str) -> None:
    """Several api-servers and triggerers starting together: one creates the tables, none fails."""
    errors: list[BaseException] = []
    stores: list[EventStore] = []
    lock = threading.Lock()

    def open_store() -> None:
        try:
            store = EventStore(pg_url)
            with lock:
                stores.append(store)
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(stores) == 8
    assert current_revision(stores[0].engine) == head_revision()
    for store in stores:
        store.dispose()


async def test_many_waiting_triggers_cost_one_connection_per_process(postgres: PostgresServer) -> None:
    """200 triggers waiting in one process: once their start-up reads are done, the listener's connection
    is the only one open (the waiting store keeps none between uses); a later read still works."""
    import os

    import psycopg

    from airflow_edc_callbacks.store import get_listener, get_store
    from airflow_edc_callbacks.triggers import EdcCallbackTrigger
    from tests.conftest import close_store

    url = postgres.create_database()
    os.environ["AIRFLOW__EDC_CALLBACKS__STORE_URL"] = url
    store = get_store(waiting=True)
    triggers = [
        EdcCallbackTrigger(correlation_id=f"c{i}", transfer_process_id=f"tp-{i}", fallback_check_interval=600)
        for i in range(200)
    ]
    runs = [t.run() for t in triggers]
    tasks = [asyncio.ensure_future(r.__anext__()) for r in runs]
    database = url.rsplit("/", 1)[1]

    def sessions() -> int:
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres") as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
            ).fetchone()
        return int(row[0]) if row else 0

    try:
        await asyncio.to_thread(wait_until, lambda: len(store.holds()) == 200, 30, "200 waiting triggers")
        assert get_listener(store).subscription_count == 200
        # every trigger has read the store (its hold comes first, then its read): all sessions but the
        # listener's close; one more would stay open for good and time this out
        await asyncio.to_thread(wait_until, lambda: sessions() == 1, 30, "one session: the listener's")
        assert store.events(process_id="tp-0") == []  # the store opens a connection again after closing its own
        await asyncio.to_thread(wait_until, lambda: sessions() == 1, 30, "the read's session to close when idle")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run in runs:
            await run.aclose()  # type: ignore[attr-defined]
        del os.environ["AIRFLOW__EDC_CALLBACKS__STORE_URL"]
        close_store(url)


def _insert_static_event(connection: Connection, process_id: str, received_at: int) -> int:
    """Insert a provider's ``TransferProcessCompleted`` as the receiver stores one that came by a static
    route (with its NOTIFY), in ``connection``'s open transaction; return its ``seq``."""
    body = envelope("TransferProcessCompleted", process_id, type="PROVIDER")
    table = CallbackEventRow.__table__
    values = {
        "envelope_id": body["id"],
        "event_type": body["type"],
        "process_id": process_id,
        "correlation_id": None,
        "event_at": body["at"],
        "received_at": received_at,
        "routes": "static:prov",
        "body": body,
        "body_sha256": body_sha256(body),
    }
    seq = int(connection.execute(insert(table).values(**values).returning(table.c.seq)).scalar_one())
    connection.execute(select(func.pg_notify(NOTIFY_CHANNEL, str(seq))))
    return seq


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("restart", [False, True], ids=["watching", "restarted-between"])
async def test_watcher_fires_both_events_when_a_lower_seq_commits_after_a_higher_one(
    edc_config: str, restart: bool
) -> None:
    """Two receivers store an event each at once: the first gets the lower ``seq`` but commits after the
    second, whose event the watcher has fired already (moving its cursor past the lower ``seq``). The
    watcher fires the late one too, while it watches or when its triggerer starts again (here 10 minutes
    after the events came), and each event once."""
    from airflow_edc_callbacks.store import get_store
    from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger
    from tests.helpers import until_subscribed

    store = get_store(edc_config)
    received_at = int(time.time() * 1000) - 600_000

    def watcher() -> EdcCallbackEventTrigger:
        return EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER", name="w")

    run = watcher().run()
    fired: list[str] = []
    try:
        next_event = asyncio.ensure_future(run.__anext__())
        await until_subscribed()
        with store.engine.connect() as slow, store.engine.connect() as fast:
            slow_transaction = slow.begin()
            low = _insert_static_event(slow, "tp-low", received_at)
            with fast.begin():
                high = _insert_static_event(fast, "tp-high", received_at + 5)
            assert low < high
            fired.append((await asyncio.wait_for(next_event, 10)).payload["process_id"])
            if restart:
                await run.aclose()  # the triggerer stops...
            slow_transaction.commit()  # ...and the lower seq commits after the cursor passed it
        if restart:
            run = watcher().run()
        next_event = asyncio.ensure_future(run.__anext__())
        fired.append((await asyncio.wait_for(next_event, 10)).payload["process_id"])
        assert fired == ["tp-high", "tp-low"]
        next_event = asyncio.ensure_future(run.__anext__())
        done, _ = await asyncio.wait({next_event}, timeout=1.0)  # measured: nothing fires a second time
        assert done == set(), [task.result().payload for task in done]
    finally:
        next_event.cancel()
        await asyncio.gather(next_event, return_exceptions=True)
        await run.aclose()
    with store.engine.connect() as connection:
        claimed = connection.execute(
            select(TriggerFiredRow.process_id).where(TriggerFiredRow.name == "w").order_by(TriggerFiredRow.seq)
        ).scalars()
        assert list(claimed) == ["tp-low", "tp-high"]


def test_connections_give_up_on_a_database_that_stops_answering(pg_url: str) -> None:
    """Every store connection carries libpq's connection, keep-alive and TCP user time-outs (the kernel's own
    would hold a stalled commit, and with it the receiver's single writer, for about 15 minutes); a value the
    store URL sets wins."""
    store = EventStore(pg_url)
    tuned = EventStore(f"{pg_url}?connect_timeout=3&tcp_user_timeout=5000")
    try:
        for each, connect_timeout, user_timeout in ((store, "10", "30000"), (tuned, "3", "5000")):
            with each.engine.connect() as connection:
                driver = connection.connection.driver_connection
                assert driver is not None
                parameters = driver.info.get_parameters()
            assert parameters["connect_timeout"] == connect_timeout
            assert parameters["tcp_user_timeout"] == user_timeout
            assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")
            assert (parameters["keepalives_interval"], parameters["keepalives_count"]) == ("10", "3")
    finally:
        store.dispose()
        tuned.dispose()
