"""EdcCallbackEventTrigger (the AssetWatcher trigger) against the real store and receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.store import get_listener, get_store
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope

STATIC = {"conn_type": "edc_static_callback", "password": "st", "extra": {"events": ["transfer.process"]}}


@pytest.fixture
def receiver(edc_config: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_PROV", json.dumps(STATIC))
    settings = ReceiverSettings(store_url=edc_config, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as client:
        yield client


def post_static(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/callbacks/static/prov", json=body, headers={"X-Edc-Callback-Auth": "st"})
    assert response.status_code == 200, response.text


def provider_event(event_type: str, process_id: str, asset: str = "demo-asset") -> dict[str, Any]:
    return envelope(event_type, process_id, type="PROVIDER", assetId=asset)


async def collect(trigger: EdcCallbackEventTrigger, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The payloads of the trigger's first ``count`` events (then the trigger is closed, like a restart)."""
    events = trigger.run()
    out: list[dict[str, Any]] = []
    try:
        while len(out) < count:
            out.append(dict((await asyncio.wait_for(events.__anext__(), timeout)).payload))
    finally:
        await events.aclose()
    return out


async def until_watching(timeout: float = 5) -> None:
    listener = get_listener(get_store())
    deadline = time.monotonic() + timeout
    while listener.subscription_count == 0:
        assert time.monotonic() < deadline, "the event trigger never subscribed"
        await asyncio.sleep(0.01)


def watcher(**kwargs: Any) -> EdcCallbackEventTrigger:
    return EdcCallbackEventTrigger(
        event_types=["TransferProcessCompleted"], process_type="PROVIDER", name="provider-transfers", **kwargs
    )


def test_serialize_round_trip_and_filters() -> None:
    trigger = watcher(asset_id="a1")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_edc_callbacks.triggers.events.EdcCallbackEventTrigger"
    assert EdcCallbackEventTrigger(**kwargs).serialize() == (classpath, kwargs)
    with pytest.raises(ValueError, match="process_type"):
        EdcCallbackEventTrigger(process_type="BOTH")
    assert EdcCallbackEventTrigger(event_types=["A"]).name == EdcCallbackEventTrigger(event_types=["A"]).name
    assert EdcCallbackEventTrigger(event_types=["A"]).name != EdcCallbackEventTrigger(event_types=["B"]).name


async def test_fires_once_per_transfer_and_keeps_its_cursor_across_a_restart(receiver: TestClient) -> None:
    post_static(receiver, provider_event("TransferProcessCompleted", "before-the-watcher"))  # not replayed
    first_run = asyncio.ensure_future(collect(watcher(), 1))
    await until_watching()
    await asyncio.to_thread(post_static, receiver, provider_event("TransferProcessStarted", "tp-1"))  # filtered
    await asyncio.to_thread(post_static, receiver, envelope("TransferProcessCompleted", "tp-c"))  # CONSUMER
    await asyncio.to_thread(post_static, receiver, provider_event("TransferProcessCompleted", "tp-1"))
    [fired] = await asyncio.wait_for(first_run, 10)
    assert (fired["process_id"], fired["process_type"], fired["asset_id"]) == ("tp-1", "PROVIDER", "demo-asset")
    assert fired["routes"] == ["static:prov"]

    # while no triggerer runs: EDC 0.15 publishes Completed a second time (new envelope id), and a new transfer ends
    post_static(receiver, provider_event("TransferProcessCompleted", "tp-1"))
    post_static(receiver, provider_event("TransferProcessCompleted", "tp-2", asset="other-asset"))
    [after_restart] = await collect(watcher(), 1)
    assert after_restart["process_id"] == "tp-2"
    assert after_restart["asset_id"] == "other-asset"


async def test_one_shot_since(receiver: TestClient) -> None:
    post_static(receiver, provider_event("TransferProcessStarted", "old"))
    since = int(time.time() * 1000) + 1
    task = asyncio.ensure_future(
        collect(EdcCallbackEventTrigger(process_type="PROVIDER", since=since, one_shot=True), 1)
    )
    await until_watching()
    await asyncio.to_thread(post_static, receiver, provider_event("TransferProcessInitiated", "new"))
    [found] = await asyncio.wait_for(task, 10)
    assert found["process_id"] == "new"
