"""The SQLite store file deleted or replaced while the receiver and the listener run; its mode (0600).

A SQLite connection keeps the file it opened after the file is deleted or another file is renamed over
its path; triggers and the CLI open the file at the path. Nothing here sleeps to synchronise: waits have
deadlines (``wait_until``, ``Subscription.wait``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.store import EventStore, StoreListener
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY, close_store
from tests.helpers import envelope, wait_until

CALLBACK = f"/callbacks/{make_token(SIGNING_KEY, 'corr-file')}"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """The store file's path (not created yet); the process-wide store of its URL is closed afterwards."""
    path = tmp_path / "store" / "events.db"
    yield path
    close_store(_url(path))


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def receiver(db: Path) -> Iterator[tuple[TestClient, ReceiverSettings]]:
    """The receiver on the SQLite file ``db`` (no background purge, so every commit is a callback's)."""
    settings = ReceiverSettings(
        store_url=_url(db), signing_key=SIGNING_KEY, auth=None, auth_from_config=False, purge_interval=0
    )
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _envelope_ids_in_file(path: Path) -> list[str]:
    """The envelope ids in the file at ``path``, read by a fresh store (as the CLI and triggers open it)."""
    reader = EventStore(_url(path))
    try:
        return [e.envelope_id for e in reader.events()]
    finally:
        reader.dispose()


def _store_file_with_event(path: Path, body: dict[str, Any]) -> None:
    """Create another store file at ``path`` holding ``body`` (closed, so no -wal of its own is left)."""
    other = EventStore(_url(path))
    other.record(EventEnvelope.model_validate(body), body, correlation_id=None)
    other.dispose()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_callback_after_the_file_was_deleted_goes_to_the_new_file_every_reader_opens(
    receiver: tuple[TestClient, ReceiverSettings], db: Path
) -> None:
    client, _settings = receiver
    before = envelope("TransferProcessStarted", "tp-file")
    assert client.post(CALLBACK, json=before).json()["status"] == "stored"
    db.unlink()  # the receiver's pooled connections still have the old file open
    after = envelope("TransferProcessCompleted", "tp-file")
    response = client.post(CALLBACK, json=after)
    assert response.json() == {"status": "stored", "id": after["id"]}
    assert client.get("/health").json() == {"status": "ok", "store": "ok"}
    # the trigger's and the CLI's view: a new file at the path, with this event and not the deleted one's
    assert _envelope_ids_in_file(db) == [after["id"]]
    assert _mode(db) == 0o600


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_write_committing_while_the_file_is_deleted_or_replaced_is_503_and_the_store_recovers(
    receiver: tuple[TestClient, ReceiverSettings], db: Path, tmp_path: Path, change: str
) -> None:
    """The file goes away between the connection's check at checkout and the commit: the event is in the
    old file only, so the receiver must not say it is stored."""
    client, settings = receiver
    assert client.post(CALLBACK, json=envelope("TransferProcessStarted", "tp-race")).status_code == 200
    replacement = tmp_path / "replacement.db"
    kept = envelope("TransferProcessInitiated", "tp-other")
    _store_file_with_event(replacement, kept)

    changed: list[bool] = []

    def change_the_file(_connection: Any) -> None:  # runs just before the DBAPI commit, once
        if changed:
            return
        changed.append(True)
        if change == "deleted":
            db.unlink()
        else:
            replacement.rename(db)

    event.listen(settings.store.engine, "commit", change_the_file)
    lost = envelope("TransferProcessCompleted", "tp-race")
    response = client.post(CALLBACK, json=lost)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "stored" not in response.text

    again = envelope("TransferProcessCompleted", "tp-race")  # EDC sends no retry: the next event
    assert client.post(CALLBACK, json=again).json() == {"status": "stored", "id": again["id"]}
    assert client.get("/health").status_code == 200
    expected = [again["id"]] if change == "deleted" else [kept["id"], again["id"]]
    assert _envelope_ids_in_file(db) == expected


def test_file_replaced_by_another_store_file_is_followed_without_the_old_files_wal(
    receiver: tuple[TestClient, ReceiverSettings], db: Path, tmp_path: Path
) -> None:
    """A file renamed over the path is used as it is: the old file's -wal (uncheckpointed events) must not
    be replayed over it, and the callback after the rename is stored in it."""
    client, _settings = receiver
    old = envelope("TransferProcessStarted", "tp-old")
    assert client.post(CALLBACK, json=old).status_code == 200
    assert Path(f"{db}-wal").stat().st_size > 0  # the old event is in the old file's WAL
    replacement = tmp_path / "replacement.db"
    kept = envelope("TransferProcessInitiated", "tp-kept")
    _store_file_with_event(replacement, kept)
    replacement.rename(db)

    new = envelope("TransferProcessCompleted", "tp-new")
    assert client.post(CALLBACK, json=new).json() == {"status": "stored", "id": new["id"]}
    assert _envelope_ids_in_file(db) == [kept["id"], new["id"]]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_file_renamed_over_the_path_just_before_sqlite_opens_it_gets_no_old_wal(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename lands between the store's look at the path (and at -wal/-shm) and SQLite's open. A
    connection that reads the file it got would attach the old file's -wal/-shm, and closing it would
    checkpoint the old WAL into the replacement (found by writers racing changes)."""
    store = EventStore(_url(db), pool_size=1)
    try:
        old = envelope("TransferProcessStarted", "tp-old")
        _record(store, old)  # in the old file's WAL
        held = store.engine.connect()  # the old file stays open, like the receiver's other connections
        replacement = tmp_path / "replacement.db"
        kept = envelope("TransferProcessInitiated", "tp-kept")
        _store_file_with_event(replacement, kept)
        sqlite_connect = store.engine.dialect.connect

        def rename_then_connect(*args: Any, **kwargs: Any) -> Any:
            if replacement.exists():
                replacement.rename(db)
            return sqlite_connect(*args, **kwargs)

        monkeypatch.setattr(store.engine.dialect, "connect", rename_then_connect)
        new = envelope("TransferProcessCompleted", "tp-new")
        assert _record(store, new) is True  # a second connection: opened just after the rename
        held.close()
    finally:
        store.dispose()
    assert _envelope_ids_in_file(db) == [kept["id"], new["id"]]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_health_and_callbacks_are_503_while_the_path_holds_no_database_then_recover(
    receiver: tuple[TestClient, ReceiverSettings], db: Path, tmp_path: Path
) -> None:
    client, _settings = receiver
    assert client.post(CALLBACK, json=envelope()).status_code == 200
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not a SQLite database\n" * 200)
    junk.rename(db)
    response = client.post(CALLBACK, json=envelope("TransferProcessCompleted", "tp-junk"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    health = client.get("/health")
    assert health.status_code == 503
    assert health.headers["Retry-After"] == "5"

    db.unlink()  # the operator removes it: the store starts a new file
    recovered = envelope("TransferProcessCompleted", "tp-junk")
    assert client.post(CALLBACK, json=recovered).json() == {"status": "stored", "id": recovered["id"]}
    assert client.get("/health").status_code == 200
    assert _envelope_ids_in_file(db) == [recovered["id"]]


def _record(store: EventStore, body: dict[str, Any]) -> bool:
    return store.record(EventEnvelope.model_validate(body), body, correlation_id=None)


def _delete_or_replace(db: Path, tmp_path: Path, change: str) -> None:
    if change == "deleted":
        db.unlink()
    else:
        empty = tmp_path / "empty.db"
        EventStore(_url(empty)).dispose()
        empty.rename(db)


@pytest.mark.parametrize("change", ["deleted", "replaced"])
async def test_listener_delivers_events_written_to_the_new_file(db: Path, tmp_path: Path, change: str) -> None:
    """The listener's connection has the old file open; the event is written to the file now at the path,
    where it gets seq 1 again (the old file's cursor is at 3)."""
    waiting = EventStore(_url(db), pool_size=1)
    listener = StoreListener(waiting, poll_interval=0.02).start()
    writer: EventStore | None = None
    try:
        for i in range(3):
            await asyncio.to_thread(_record, waiting, envelope("TransferProcessStarted", f"tp-old-{i}"))
        sub = listener.subscribe(process_ids=["tp-after"])
        await asyncio.to_thread(_delete_or_replace, db, tmp_path, change)
        # the receiver's store in another process, opened after the change
        writer = await asyncio.to_thread(EventStore, _url(db))
        body = envelope("TransferProcessCompleted", "tp-after")
        assert await asyncio.to_thread(_record, writer, body) is True
        got = await sub.wait(timeout=10)
        assert [(e.envelope_id, e.seq) for e in got] == [(body["id"], 1)]
        assert listener.file_switches == 1
        later = envelope("TransferProcessTerminated", "tp-after")  # and it keeps following the new file
        await asyncio.to_thread(_record, writer, later)
        assert [e.envelope_id for e in await sub.wait(timeout=10)] == [later["id"]]
    finally:
        listener.stop()
        waiting.dispose()
        if writer is not None:
            writer.dispose()


def test_writers_racing_deletions_and_replacements_get_503_or_a_write_in_the_file_at_the_path(
    db: Path, tmp_path: Path
) -> None:
    """Threads write while the file is deleted or replaced again and again (found: a connection that opened
    a file renamed over the path after the -wal check must not read; Alembic is one upgrade at a time).
    Every write raises StoreUnavailableError or is stored; those started after the last change are in the
    file at the path; nothing else goes wrong and the file is intact."""
    store = EventStore(_url(db))
    acknowledged: list[tuple[int, str]] = []  # (changes made when the write started, envelope id)
    errors: list[BaseException] = []
    changes = 0
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            body = envelope("TransferProcessStarted", "tp-race")
            started = changes
            try:
                if _record(store, body):
                    acknowledged.append((started, body["id"]))
            except StoreUnavailableError:
                pass
            except BaseException as err:
                errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        for i in range(8):
            done = len(acknowledged)
            wait_until(lambda done=done: len(acknowledged) >= done + 5, 20, "writes between two changes")
            if i % 2:
                db.unlink()
            else:
                replacement = tmp_path / f"replacement-{i}.db"
                EventStore(_url(replacement)).dispose()
                replacement.rename(db)
            changes += 1
        done = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= done + 20, 20, "writes after the last change")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        store.dispose()
    assert errors == []
    last = {envelope_id for started, envelope_id in acknowledged if started == changes}
    assert last
    assert last <= set(_envelope_ids_in_file(db))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which SQLite would create the file readable by everyone (0644)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _files(db: Path) -> dict[str, int]:
    return {p.name: _mode(p) for p in sorted(db.parent.iterdir()) if p.name.startswith(db.name)}


def test_store_file_is_created_0600_and_recreated_0600_and_an_existing_files_mode_is_kept(
    umask_022: None, db: Path
) -> None:
    store = EventStore(_url(db))
    other: EventStore | None = None
    try:
        _record(store, envelope())
        files = _files(db)
        assert {"events.db", "events.db-wal", "events.db-shm"} <= set(files)
        assert set(files.values()) == {0o600}, files

        store.dispose()  # the last connection closed: SQLite removes -wal and -shm
        db.unlink()
        other = EventStore(_url(db))  # a new process re-creates it
        assert _mode(db) == 0o600
        other.dispose()

        _record(store, envelope())  # deleted while the store's connections have it open: re-created too
        db.unlink()
        _record(store, envelope())
        assert set(_files(db).values()) == {0o600}, _files(db)

        store.dispose()
        db.chmod(0o640)  # the operator's choice for an existing file is left as it is
        _record(store, envelope())
        assert _mode(db) == 0o640
    finally:
        store.dispose()
        if other is not None:
            other.dispose()
