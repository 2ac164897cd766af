from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from airflow_edc_callbacks.store import EventStore, schema
from tests.helpers import envelope, record_event


def test_record_is_idempotent_on_envelope_id(store: EventStore) -> None:
    body = envelope("TransferProcessStarted", "tp-1", envelope_id="env-1")
    assert record_event(store, body) is True
    assert record_event(store, body) is False
    assert record_event(store, body, correlation_id=None, route="static:cb1") is False
    events = store.events(process_id="tp-1")
    assert len(events) == 1
    assert events[0].routes == ("dynamic", "static:cb1")
    assert events[0].correlation_id == "c1"
    assert events[0].body == body


def test_sqlite_store_uses_wal_and_is_durable_for_other_connections(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(store_url)
    record_event(store, envelope("TransferProcessCompleted", "tp-2"))
    store.dispose()
    path = store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT event_type FROM edc_callback_event").fetchall() == [("TransferProcessCompleted",)]


def test_events_by_correlation_or_process_oldest_first(store: EventStore) -> None:
    record_event(store, envelope("TransferProcessInitiated", "tp-1"), correlation_id="c1")
    record_event(store, envelope("TransferProcessStarted", "tp-2"), correlation_id="c2")
    record_event(store, envelope("TransferProcessCompleted", "tp-1"), correlation_id=None)
    assert [e.event_type for e in store.events(correlation_id="c1")] == ["TransferProcessInitiated"]
    assert [e.event_type for e in store.events(process_id="tp-1")] == [
        "TransferProcessInitiated",
        "TransferProcessCompleted",
    ]
    assert len(store.events(correlation_id="c2", process_id="tp-1")) == 3
    assert len(store.events()) == 3
    assert store.max_seq() == store.events()[-1].seq


def test_purge_deletes_only_old_events(store: EventStore) -> None:
    record_event(store, envelope(process_id="old"))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edc_callback_event SET received_at = received_at - CAST(8 AS BIGINT) * 86400000")
    record_event(store, envelope(process_id="new"))
    assert store.purge(timedelta(days=7)) == 1
    assert [e.process_id for e in store.events()] == ["new"]


def test_store_rejects_unreachable_database(tmp_path) -> None:
    from airflow_edc_callbacks.exceptions import StoreUnavailableError

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(StoreUnavailableError, match="Cannot open the callback event store"):
        EventStore(f"sqlite:///{not_a_dir}/events.db")


def _age(store: EventStore, process_id: str, days: float) -> None:
    """Make the events of ``process_id`` look ``days`` old (received_at is the receiver's clock)."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE edc_callback_event SET received_at = received_at - {int(days * 86400000)} "
            f"WHERE process_id = '{process_id}'"
        )


def test_purge_keeps_what_a_waiting_trigger_holds(store: EventStore) -> None:
    for process_id in ("held", "held-by-token", "stale-hold", "free"):
        record_event(store, envelope("TransferProcessStarted", process_id), correlation_id=f"c-{process_id}")
        _age(store, process_id, 8)
    store.hold("trigger-1", process_id="held", correlation_id=None)
    store.hold("trigger-2", process_id=None, correlation_id="c-held-by-token")
    store.hold("trigger-3", process_id="stale-hold", correlation_id=None)
    with store.engine.begin() as conn:  # trigger-3 was not renewed for 8 days: its triggerer is gone
        conn.exec_driver_sql(
            "UPDATE edc_trigger_hold SET renewed_at = renewed_at - CAST(8 AS BIGINT) * 86400000 "
            "WHERE holder = 'trigger-3'"
        )
    assert store.purge(timedelta(days=7)) == 2
    assert sorted(e.process_id or "" for e in store.events()) == ["held", "held-by-token"]
    assert [h[0] for h in store.holds()] == ["trigger-1", "trigger-2"]  # the stale hold is gone too
    store.release("trigger-1")
    store.release("trigger-2")
    assert store.purge(timedelta(days=7)) == 2
    assert store.events() == []


def test_purge_forgets_what_event_triggers_fired_for_purged_events(store: EventStore) -> None:
    record_event(store, envelope("TransferProcessCompleted", "old"))
    old = store.events()[0]
    assert store.claim("watcher", old) is True
    _age(store, "old", 8)
    assert store.purge(timedelta(days=7)) == 1
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM edc_trigger_fired").scalar_one() == 0


def test_forget_deletes_one_event_and_what_event_triggers_fired_for_it(store: EventStore) -> None:
    record_event(store, envelope("TransferProcessCompleted", "doctor"))
    record_event(store, envelope("TransferProcessCompleted", "kept"))
    doomed, kept = store.events()
    assert store.claim("watcher", doomed) is True
    assert store.claim("watcher", kept) is True
    assert store.forget(doomed.envelope_id) == 1
    assert store.forget(doomed.envelope_id) == 0
    assert [e.envelope_id for e in store.events()] == [kept.envelope_id]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT seq FROM edc_trigger_fired").scalars().all() == [kept.seq]


def test_idle_connections_close_after_the_idle_timeout_and_the_pool_reopens(store_url: str) -> None:
    """A pooled store (the receiver's) keeps its connection for the next use; the store of waiting triggers
    (``pool_size=0``) closes each connection when the use ends and opens one for the next use."""
    from sqlalchemy import event

    pooled = EventStore(store_url, pool_size=1)
    unpooled = EventStore(store_url, pool_size=0)
    opened: list[object] = []
    closed: list[object] = []
    event.listen(unpooled.engine, "connect", lambda dbapi_connection, record_event: opened.append(dbapi_connection))
    event.listen(unpooled.engine, "close", lambda dbapi_connection, record_event: closed.append(dbapi_connection))
    try:
        assert pooled.max_seq() == 0
        assert pooled.engine.pool.checkedin() == 1  # kept for the next use
        assert unpooled.max_seq() == 0
        assert len(opened) == 1
        assert closed == opened  # closed as soon as the use ended: no idle connection
        assert unpooled.max_seq() == 0  # a new connection for the next use
        assert len(opened) == 2
        assert closed == opened
    finally:
        pooled.dispose()
        unpooled.dispose()


REFUSED_URLS = [
    "postgresql+psycopg2://edc:hunter2@db.example/events",
    "postgresql://edc:hunter2@db.example/events",
    "postgresql+pg8000://edc:hunter2@db.example/events",
    "mysql://edc:hunter2@db.example/events",
    "sqlite+pysqlite:///events.db",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_store_accepts_only_sqlite_and_postgresql_psycopg_urls(url: str) -> None:
    from sqlalchemy.engine import make_url

    from airflow_edc_callbacks.exceptions import StoreUnavailableError
    from airflow_edc_callbacks.store import get_store

    for open_store in (EventStore, get_store):
        with pytest.raises(StoreUnavailableError) as info:
            open_store(url)
        message = str(info.value)
        assert f"does not support {make_url(url).drivername}:// URLs" in message
        assert "sqlite:///<path>" in message
        assert "postgresql+psycopg://<user>:<password>@<host>/<database>" in message
        assert "hunter2" not in message


def test_psycopg2_url_is_refused_with_a_message_naming_the_accepted_forms() -> None:
    from airflow_edc_callbacks.exceptions import StoreUnavailableError

    with pytest.raises(StoreUnavailableError) as info:
        EventStore("postgresql+psycopg2://airflow:secret@postgres/edc_callbacks")
    assert str(info.value) == (
        "The callback event store does not support postgresql+psycopg2:// URLs; use sqlite:///<path> or "
        "postgresql+psycopg://<user>:<password>@<host>/<database> (psycopg 3: install the [postgres] extra)"
    )


def test_the_providers_store_url_example_is_an_accepted_url() -> None:
    from sqlalchemy.engine import make_url

    from airflow_edc_callbacks.get_provider_info import get_provider_info

    option = get_provider_info()["config"]["edc_callbacks"]["options"]["store_url"]
    assert make_url(option["example"]).drivername == "postgresql+psycopg"
    assert "psycopg2" not in option["example"]


def test_a_binding_made_before_migration_0005_counts_as_taken(tmp_path: Path) -> None:
    """A task that succeeded under the previous version never marked its transfer taken: after the upgrade
    a clear of that task starts a new transfer, as it did before (a retry never takes such a result)."""
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engine = create_engine(url)
    config = schema._config()
    with engine.begin() as connection:  # the store as the previous version left it: revision 0004
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        connection.execute(
            text("INSERT INTO edc_process_binding (process_id, correlation_id, bound_at) VALUES (:p, :c, :t)"),
            {"p": "tp-old", "c": "corr-1", "t": int(time.time() * 1000)},
        )
    engine.dispose()
    upgraded = EventStore(url)
    try:
        assert schema.current_revision(upgraded.engine) == schema.head_revision()
        assert upgraded.untaken("tp-old", "corr-1") is False
        upgraded.bind("tp-new", "corr-1")  # bound by this version: untaken until a try takes it
        assert upgraded.untaken("tp-new", "corr-1") is True
        assert upgraded.mark_taken("tp-new", "corr-1") is True
        assert upgraded.untaken("tp-new", "corr-1") is False
    finally:
        upgraded.dispose()
