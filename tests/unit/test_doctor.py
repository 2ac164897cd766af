"""``airflow-edc-callbacks doctor`` through its console script, on real receivers (``airflow-edc-callbacks
serve`` on a port the OS picks) and real SQLite stores: a callback_base_url that is unreachable or points at
a receiver writing elsewhere, and a missing signing key, are reported with their fixes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_edc_callbacks.store import EventStore
from tests.conftest import SIGNING_KEY
from tests.unit.receiver.test_server import Server

BIN = Path(sys.executable).parent
DOCTOR = [str(BIN / "airflow-edc-callbacks"), "doctor"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, store: Path, *, key: bytes | None = SIGNING_KEY, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__EDC_CALLBACKS__", "AIRFLOW_CONN_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__EDC_CALLBACKS__STORE_URL": f"sqlite:///{store}"})
    if key is not None:
        env["AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY"] = key.decode()
    env.update(settings)
    return env


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, str]], Server]]:
    """Start ``airflow-edc-callbacks serve --port 0`` in an environment; stopped at teardown."""
    started: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        server = Server([str(BIN / "airflow-edc-callbacks"), "serve", "--host", "127.0.0.1", "--port", "0"], env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, dict[str, str]], str]:
    """Run doctor; its exit status, its checks by name (from ``--json``) and its standard error."""
    result = subprocess.run([*DOCTOR, "--json", *args], capture_output=True, text=True, env=env, timeout=120)
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["status"] == (
        "fail" if result.returncode else ("warn" if any(c["status"] == "warn" for c in checks.values()) else "ok")
    )
    return result.returncode, checks, result.stderr


def base_url(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_doctor_passes_on_the_receiver_of_its_store_and_leaves_no_event(
    tmp_path: Path, serve: Callable[[dict[str, str]], Server]
) -> None:
    store = tmp_path / "events.db"
    server = serve(_env(tmp_path / "airflow", store))
    env = _env(tmp_path / "airflow", store, AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL=base_url(server))
    result = subprocess.run(DOCTOR, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "ok", "ok", "ok", "warn"]
    status, name, found = lines[0].split(None, 2)
    assert (status, name) == ("ok", "store")
    assert found.startswith(f"sqlite:///{store}: opens; schema at revision ")
    assert found.endswith(" (current)")
    assert lines[3].split(None, 3)[1:3] == ["callback", "self-test"]
    assert f"a signed event posted to {base_url(server)} arrived in the store" in lines[3]
    assert lines[4].split(None, 3) == [
        "warn",
        "connection",
        "edc_default",
        "not defined -- fix: airflow connections add edc_default --conn-type edc "
        "--conn-host http://<consumer>:<port>/management --conn-password <API key>",
    ]
    assert EventStore(f"sqlite:///{store}").events() == []  # the self-test event is removed again


def test_doctor_reports_an_unset_and_unreachable_callback_base_url(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    EventStore(f"sqlite:///{store}").dispose()  # the store exists and is current
    closed = _closed_port()
    env = _env(tmp_path / "airflow", store, AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{closed}")
    status, checks, _ = doctor(env)
    assert status == 1
    assert checks["store"]["status"] == "ok"
    fallback = f"http://127.0.0.1:{closed}/edc-callbacks"
    assert checks["callback_base_url"] == {
        "name": "callback_base_url",
        "status": "warn",
        "message": f"not set: connectors are told to call back {fallback} ([api] base_url + /edc-callbacks)",
        "fix": "set [edc_callbacks] callback_base_url (AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL) to the receiver's "
        "URL as the connector reaches it",
    }
    self_test = checks["callback self-test"]
    assert self_test["status"] == "fail"
    assert self_test["message"].startswith(f"cannot reach {fallback}: ")
    assert "callback_base_url" in self_test["fix"]


def test_doctor_reports_a_callback_base_url_of_a_receiver_writing_elsewhere(
    tmp_path: Path, serve: Callable[[dict[str, str]], Server]
) -> None:
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    EventStore(f"sqlite:///{ours}").dispose()
    other = serve(_env(tmp_path / "other", theirs))
    env = _env(tmp_path / "airflow", ours, AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL=base_url(other))
    status, checks, _ = doctor(env, "--timeout", "2")
    assert status == 1
    self_test = checks["callback self-test"]
    assert self_test["status"] == "fail"
    assert self_test["message"] == (
        f"the receiver at {base_url(other)} took the self-test event but it did not arrive in sqlite:///{ours} "
        "within 2 s: that receiver writes to another store"
    )
    assert EventStore(f"sqlite:///{ours}").events() == []
    assert [e.event_type for e in EventStore(f"sqlite:///{theirs}").events()] == ["TransferProcessDoctorSelfTest"]


def test_doctor_reports_a_missing_signing_key(tmp_path: Path, serve: Callable[[dict[str, str]], Server]) -> None:
    """Without callback_signing_key the receiver generates a key in its AIRFLOW_HOME: doctor warns, and its
    self-test passes only where AIRFLOW_HOME is shared (the receiver refuses tokens signed elsewhere)."""
    store, home = tmp_path / "events.db", tmp_path / "airflow"
    server = serve(_env(home, store, key=None))
    url = {"AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": base_url(server)}

    status, checks, _ = doctor(_env(home, store, key=None, **url))
    key_file = home / "edc_callbacks_signing.key"
    assert checks["signing key"]["status"] == "warn"
    assert checks["signing key"]["message"] == (
        f"callback_signing_key is not set: tokens are signed with the key generated in {key_file}, which only "
        "processes sharing this AIRFLOW_HOME share (a receiver on another host answers their callbacks 404)"
    )
    assert "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY" in checks["signing key"]["fix"]
    assert key_file.read_text().strip() not in json.dumps(checks)
    assert checks["callback self-test"]["status"] == "ok"
    assert status == 0

    elsewhere = tmp_path / "another-host"
    status, checks, _ = doctor(_env(elsewhere, store, key=None, **url))
    assert status == 1
    assert checks["signing key"]["status"] == "warn"
    assert checks["callback self-test"]["status"] == "fail"
    assert checks["callback self-test"]["message"] == (
        f"the receiver at {base_url(server)} refused the signed self-test event (404: the token does not verify): "
        "the receiver has another signing key"
    )


def test_doctor_reports_a_connection_it_cannot_reach_and_a_store_it_cannot_open(tmp_path: Path) -> None:
    closed = _closed_port()
    connection = {"conn_type": "edc", "host": f"http://127.0.0.1:{closed}/management", "password": "s3cret-key"}
    env = _env(
        tmp_path / "airflow",
        tmp_path,  # a directory is no SQLite file
        AIRFLOW_CONN_EDC_DEFAULT=json.dumps(connection),
        AIRFLOW__EDC_CALLBACKS__STORE_URL=f"postgresql+psycopg://edc:hunter2@127.0.0.1:{closed}/events",
    )
    status, checks, stderr = doctor(env, "--timeout", "2")
    assert status == 1
    assert checks["store"]["status"] == "fail"
    assert checks["store"]["message"].startswith(f"cannot open postgresql+psycopg://edc:***@127.0.0.1:{closed}/events")
    assert checks["callback self-test"] == {**checks["callback self-test"], "status": "fail"}
    edc = checks["connection edc_default"]
    assert edc["status"] == "fail"
    assert edc["message"].startswith(f"Management API v3 at http://127.0.0.1:{closed}/management: cannot reach it")
    for text in (json.dumps(checks), stderr):
        assert "hunter2" not in text
        assert "s3cret-key" not in text
