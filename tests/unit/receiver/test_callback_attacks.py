"""An independent attack on callback trust (issue 10's acceptance): a valid token of one task, no token,
hostile but well-formed input, store faults. Each test names what held, or what an attack found and how
it is closed; all through the public surface (receiver HTTP, triggers, sensor trigger, hook, CLI)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.store import get_listener, get_store
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope

STATIC = {"conn_type": "edc_static_callback", "password": "st", "extra": {"events": ["transfer.process", "asset"]}}
TASK_A = "task-a"  # the attacker holds this task's valid token
TASK_B = "task-b"  # the victim
B = "tp-b"


@pytest.fixture
def receiver(edc_config: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_PROV", json.dumps(STATIC))
    settings = ReceiverSettings(store_url=edc_config, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as client:
        yield client


def post(client: TestClient, body: Any, correlation: str = TASK_A) -> httpx.Response:
    return client.post(f"/callbacks/{make_token(SIGNING_KEY, correlation)}", json=body)


def post_static(client: TestClient, body: Any) -> httpx.Response:
    return client.post("/callbacks/static/prov", json=body, headers={"X-Edc-Callback-Auth": "st"})


async def until(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# -- a token's holder against the watchers' shared work ------------------------------------------------


async def test_a_watcher_reads_no_body_again_while_dynamic_events_wait_for_their_static_copy(
    receiver: TestClient,
) -> None:
    """Found: a watcher read every waiting dynamic event in full (bodies up to 1 MiB) every 0.5 s for 30 s:
    a token's holder posting matching events made every watcher in the triggerer decode 60 times what he
    sent (and beyond a driver's parameter limit, the watcher failed over and over)."""
    engine = get_store(waiting=True).engine
    rechecks: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "envelope_id IN" in statement:
            rechecks.append(statement)

    event.listen(engine, "after_cursor_execute", seen)
    runs = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"]).run()
    fired = asyncio.ensure_future(runs.__anext__())
    try:
        listener = get_listener(get_store(waiting=True))
        await until(lambda: listener.subscription_count >= 1, "the watcher to subscribe")
        for index in range(3):
            forged = envelope("TransferProcessCompleted", f"tp-unbound-{index}", pad="x" * 100_000)
            assert (await asyncio.to_thread(post, receiver, forged)).status_code == 200
        await until(lambda: len(rechecks) >= 3, "the watcher to look for static copies three times")
        assert not any("body" in statement for statement in rechecks)
        genuine = envelope("TransferProcessCompleted", "tp-genuine")
        assert (await asyncio.to_thread(post_static, receiver, genuine)).status_code == 200
        assert (await asyncio.wait_for(fired, 10)).payload["process_id"] == "tp-genuine"
    finally:
        fired.cancel()
        event.remove(engine, "after_cursor_execute", seen)
        await runs.aclose()


# -- accepted input that crashed a reader ---------------------------------------------------------------


@pytest.mark.parametrize("expires_in", ["1e999", pytest.param(10**400, id="400-digits"), "NaN", "-inf"])
def test_an_edr_whose_expiry_is_out_of_range_is_read_without_expiry(
    receiver: TestClient, monkeypatch: pytest.MonkeyPatch, expires_in: Any
) -> None:
    """Found: ``tx-auth:expiresIn`` of ``"1e999"`` or a 400-digit number (both accepted JSON) made
    ``EdcManagementHook.get_edr`` raise ``OverflowError`` on the stored ``TransferProcessStarted`` (and on
    the connector's EDR cache answer alike), instead of an EDR or ``EdcEdrNotFound``."""
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": "http://c/management"}))

    def no_edr_cache(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/state"):
            return httpx.Response(200, json={"state": "STARTED"})
        return httpx.Response(404, json=[{"message": "Object not found", "type": "ObjectNotFound"}])

    hook = EdcManagementHook(transport=httpx.MockTransport(no_edr_cache), retries=0, ledger=StoreLedger())
    get_store().bind(B, TASK_B)
    address = {
        "endpoint": "http://provider/public",
        "authorization": "tok",
        "https://w3id.org/tractusx/auth/expiresIn": expires_in,
    }
    assert post(receiver, envelope("TransferProcessStarted", B, dataAddress=address), TASK_B).status_code == 200
    edr = hook.get_edr(B)
    assert (edr.endpoint, edr.expires_in, edr.expired()) == ("http://provider/public", None, False)
