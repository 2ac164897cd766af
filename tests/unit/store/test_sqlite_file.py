"""The SQLite store file under the receiver: created private, and a deleted or replaced file is a 503, never
a 200 for an event that went into a file no other process reads."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.cli import main
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY, close_store
from tests.helpers import envelope

URL_PATH = f"/callbacks/{make_token(SIGNING_KEY, 'task-file')}"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store" / "events.db"
    yield path
    close_store(f"sqlite:///{path}")


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    settings = ReceiverSettings(store_url=f"sqlite:///{db}", signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as c:
        yield c


def test_the_store_file_is_created_private(db: Path) -> None:
    os.umask(0o022)
    EventStore(f"sqlite:///{db}").dispose()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_file_is_503_never_200(client: TestClient, db: Path, how: str) -> None:
    assert client.post(URL_PATH, json=envelope(process_id="tp-before")).json()["status"] == "stored"
    if how == "deleted":
        db.unlink()
    else:
        other = db.with_name("other.db")
        EventStore(f"sqlite:///{other}").dispose()  # a valid store of its own, renamed over the path
        other.replace(db)
    for process_id in ("tp-after", "tp-again"):  # and it stays so: the old file is never written again
        answer = client.post(URL_PATH, json=envelope(process_id=process_id))
        assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5"), answer.text
    health = client.get("/health")
    assert (health.status_code, health.headers.get("Retry-After")) == (503, "5")
    # nor did they reach what another process (a trigger, the CLI) opens at the path
    fresh = EventStore(f"sqlite:///{db}")
    assert {"tp-after", "tp-again"}.isdisjoint(e.process_id for e in fresh.events())
    fresh.dispose()


def test_the_cli_names_a_lost_file_in_one_line(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A process that opened the file before it was deleted says so, and what to do."""
    store_url = f"sqlite:///{db}"
    assert main(["events", "--store-url", store_url]) == 0
    db.unlink()
    assert main(["events", "--store-url", store_url]) == 1
    err = capsys.readouterr().err
    assert f"The SQLite file {db} of the callback event store was deleted" in err
    assert "Restart the processes" in err
