"""Metrics reach a real StatsD listener through Airflow's metrics interface (``[metrics] statsd_on``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackTrigger
from tests.conftest import SIGNING_KEY
from tests.helpers import REPO, envelope, first_trigger_event, wait_until


class StatsdListener:
    """A UDP socket that collects the StatsD lines Airflow sends (``name:value|type``)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return self.lines
            self.lines += data.decode().splitlines()

    def names(self) -> list[str]:
        return [line.split(":", 1)[0] for line in self.read()]


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    listener = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    from airflow.configuration import conf

    for option, value in (("statsd_on", "True"), ("statsd_host", "127.0.0.1"), ("statsd_port", str(listener.port))):
        conf.set("metrics", option, value)
    metrics.initialize_from_config()
    yield listener
    conf.set("metrics", "statsd_on", "False")
    metrics.initialize_from_config()
    listener.sock.close()


def test_receiver_counts_accepted_duplicates_and_rejections(statsd: StatsdListener, edc_config: str) -> None:
    settings = ReceiverSettings(store_url=edc_config, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    body = envelope("TransferProcessCompleted", "tp-m")
    with TestClient(create_app(settings)) as client:
        token = make_token(SIGNING_KEY, "corr-m")
        assert client.post(f"/callbacks/{token}", json=body).status_code == 200
        assert client.post(f"/callbacks/{token}", json=body).status_code == 200  # EDC re-delivery
        assert client.post("/callbacks/forged.token", json=body).status_code == 404
        assert client.post(f"/callbacks/{token}", json={"id": "x"}).status_code == 422
        assert (
            client.post(f"/callbacks/{token}", content=b"[", headers={"content-type": "text/plain"}).status_code == 415
        )
    expected = [
        "airflow.edc_callbacks.callback.accepted",
        "airflow.edc_callbacks.callback.duplicate",
        "airflow.edc_callbacks.callback.rejected.unknown_target",
        "airflow.edc_callbacks.callback.rejected.invalid",
        "airflow.edc_callbacks.callback.rejected.not_json",
    ]
    wait_until(lambda: all(name in statsd.names() for name in expected), 5, "the receiver's metrics")
    assert [line for line in statsd.lines if ".callback." in line] == [f"{name}:1|c" for name in expected]


async def test_trigger_reports_wakeup_latency_and_state_checks(
    statsd: StatsdListener, edc_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.models import EventEnvelope
    from airflow_edc_callbacks.store import get_store

    # woken by the listener: the event is stored after the trigger subscribed and read the store
    store = get_store(waiting=True)  # the triggers' store
    read = threading.Event()
    original_events = store.events

    def events_then_signal(**kwargs: Any) -> Any:
        found = original_events(**kwargs)
        read.set()
        return found

    monkeypatch.setattr(store, "events", events_then_signal)
    trigger = EdcCallbackTrigger(correlation_id="corr-w", transfer_process_id="tp-w", fallback_check_interval=600)
    task = asyncio.ensure_future(first_trigger_event(trigger, 10))
    await asyncio.to_thread(wait_until, read.is_set, 5, "the trigger's first read of the store")
    body = envelope("TransferProcessCompleted", "tp-w")
    await asyncio.to_thread(store.record, EventEnvelope.model_validate(body), body, correlation_id="corr-w")
    assert (await task)["source"] == "callback"
    # silence: the fallback asks the connector once
    conn = {"conn_type": "edc", "host": "http://consumer.example/management", "password": "k"}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps(conn))
    answer: dict[str, Any] = {"@id": "tp-s", "state": "COMPLETED", "type": "CONSUMER"}
    checker = EdcCallbackTrigger(correlation_id="corr-s", transfer_process_id="tp-s", fallback_check_interval=0.1)
    checker.hook = EdcManagementHook(async_transport=httpx.MockTransport(lambda _: httpx.Response(200, json=answer)))
    assert (await first_trigger_event(checker, 10))["source"] == "state_check"

    await asyncio.to_thread(
        wait_until,
        lambda: (
            {"airflow.edc_callbacks.trigger.wakeup_latency", "airflow.edc_callbacks.trigger.state_check"}
            <= set(statsd.names())
        ),
        5,
        "the trigger's metrics",
    )
    latency = next(line for line in statsd.lines if line.startswith("airflow.edc_callbacks.trigger.wakeup_latency:"))
    assert latency.endswith("|ms")
    assert 0 <= float(latency.split(":")[1].split("|")[0]) < 5000


_API_SERVER = r"""
import sys
from airflow.api_fastapi.app import create_app
from fastapi.testclient import TestClient
from airflow_edc_callbacks.tokens import make_token
from tests.helpers import envelope

token = make_token(sys.argv[1].encode(), "corr-api")
with TestClient(create_app()) as client:  # Airflow's own api-server app, with the plugin mounted
    body = envelope("TransferProcessCompleted", "tp-api")
    codes = [
        client.post(f"/edc-callbacks/callbacks/{token}", json=body).status_code,
        client.post("/edc-callbacks/callbacks/forged.token", json=body).status_code,
    ]
print("codes", *codes)
"""


def test_the_receiver_in_airflows_api_server_reaches_statsd(tmp_path: Path) -> None:
    """In Airflow's own api-server app (a fresh process configured from the environment, as the real one),
    the plugin's receiver emits its metrics with nothing but ``[metrics]`` set: on 3.1 Airflow reads it
    on import, on 3.3 the api-server sets Stats up, on 3.2 nothing does and the package must."""
    listener = StatsdListener()
    key = SIGNING_KEY.decode()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-for-this-test-0123456789",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": f"sqlite:///{tmp_path}/events.db",
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": key,
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _API_SERVER, key],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[-1] == "codes 200 404"
        expected = ["airflow.edc_callbacks.callback.accepted", "airflow.edc_callbacks.callback.rejected.unknown_target"]
        wait_until(lambda: all(name in listener.names() for name in expected), 5, "the api-server's metrics")
        assert [line for line in listener.lines if ".edc_callbacks." in line] == [f"{name}:1|c" for name in expected]
    finally:
        listener.sock.close()


_API_SERVER_RETENTION = r"""
from airflow.api_fastapi.app import create_app
from fastapi.testclient import TestClient
from airflow_edc_callbacks.store import get_store
from tests.helpers import wait_until

with TestClient(create_app()):  # Airflow's own api-server app: it runs the lifespans of the apps it mounts
    wait_until(lambda: get_store().events() == [], 30, "the receiver's retention on the api-server")
print("purged")
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # about the api-server, not the store
def test_the_receiver_on_airflows_api_server_runs_its_retention(tmp_path: Path, edc_config: str) -> None:
    """The plugin's receiver purges old events on the api-server from its lifespan, with no callback
    received, and counts them (``store.purged``)."""
    from airflow_edc_callbacks.models import EventEnvelope
    from airflow_edc_callbacks.store import EventStore

    store = EventStore(edc_config)
    old = envelope("TransferProcessCompleted", "tp-old")
    store.record(EventEnvelope.model_validate(old), old, correlation_id="c-old", route="dynamic")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edc_callback_event SET received_at = received_at - CAST(8 AS BIGINT) * 86400000")
    store.dispose()
    listener = StatsdListener()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")},
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-for-this-test-0123456789",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": edc_config,
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": SIGNING_KEY.decode(),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _API_SERVER_RETENTION],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.splitlines()[-1] == "purged"
        wait_until(lambda: "airflow.edc_callbacks.store.purged" in listener.names(), 5, "the purge's metric")
        assert [line for line in listener.lines if ".edc_callbacks." in line] == [
            "airflow.edc_callbacks.store.purged:1|c"
        ]
    finally:
        listener.sock.close()
