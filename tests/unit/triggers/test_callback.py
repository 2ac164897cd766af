"""EdcCallbackTrigger against the real store and receiver (no connector needed: the callbacks are what a
0.18 connector POSTs; the state-check fallback runs against real connectors in tests/e2e)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.store import get_listener, get_store
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackTrigger
from airflow_edc_callbacks.triggers.engine import Waiter
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope, first_trigger_event, until_subscribed, wait_until

CORRELATION = "corr-trigger"
TP = "tp-trigger"


def post(client: TestClient, body: dict[str, Any], correlation: str = CORRELATION) -> None:
    response = client.post(f"/callbacks/{make_token(SIGNING_KEY, correlation)}", json=body)
    assert response.status_code == 200, response.text


def make_trigger(**overrides: Any) -> EdcCallbackTrigger:
    kwargs: dict[str, Any] = {
        "correlation_id": CORRELATION,
        "transfer_process_id": TP,
        "wait_for": "completed",
        "conn_id": "edc_unused",
        "fallback_check_interval": 3600,
    }
    kwargs.update(overrides)
    return EdcCallbackTrigger(**kwargs)


def test_serialize_round_trip_holds_no_secret(edc_config: str) -> None:
    classpath, kwargs = make_trigger().serialize()
    assert classpath == "airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger"
    assert kwargs == {
        "correlation_id": CORRELATION,
        "transfer_process_id": TP,
        "wait_for": "completed",
        "conn_id": "edc_unused",
        "fallback_check_interval": 3600,
        "not_before": None,
        "deadline": None,
        "waiting_since": None,
        "terminate_on_kill": False,
        "stall_timeout": None,
    }
    assert EdcCallbackTrigger(**kwargs).serialize() == (classpath, kwargs)
    flat = json.dumps(kwargs)
    assert edc_config not in flat
    assert SIGNING_KEY.decode() not in flat


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="resolved"):
        make_trigger(wait_for="auto")
    with pytest.raises(ValueError, match="fallback_check_interval must be positive"):
        make_trigger(fallback_check_interval=0)


async def test_another_tokens_event_cannot_finish_this_transfer(receiver: TestClient) -> None:
    """A valid token vouches only for its own correlation id: a forged event for this transfer posted
    with someone else's token (e.g. one printed by `callback-url`) is ignored."""
    post(receiver, envelope("TransferProcessTerminated", TP, reason="forged"), correlation="someone-else")
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done, "an event posted with another token resumed the trigger"
    await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", TP))
    payload = await asyncio.wait_for(task, 10)
    assert payload["status"] == "success"
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessCompleted"]


async def test_the_event_payload_is_plain_json_that_the_task_resumes_with(receiver: TestClient) -> None:
    """The wire shape Airflow serializes: plain JSON types (no enums), every key of the contract; the
    operator validates it back into its result."""
    from airflow_edc_callbacks.operators import EdcTransferOperator

    post(receiver, envelope("TransferProcessStarted", TP))
    post(receiver, envelope("TransferProcessCompleted", TP, envelope_id="done-2"))
    payload = await first_trigger_event(make_trigger())
    assert json.loads(json.dumps(payload)) == payload
    assert all(type(value) in (str, int, float, bool, list, dict, type(None)) for value in payload.values())
    assert set(payload) == {
        "status",
        "transfer_process_id",
        "correlation_id",
        "state",
        "event_type",
        "reason",
        "source",
        "asset_id",
        "contract_id",
        "timeline",
    }
    assert set(payload["timeline"][0]) == {"type", "at", "received_at", "envelope_id", "routes"}
    op = EdcTransferOperator(
        task_id="t", contract_id="contract-1", counter_party_address="http://p/protocol", transfer_type="HttpData-PUSH"
    )
    result = op.execute_complete({}, payload)  # type: ignore[arg-type]
    assert (result["transfer_process_id"], result["state"], result["source"]) == (TP, "COMPLETED", "callback")
    assert result["timeline"] == payload["timeline"]


async def test_event_stored_before_trigger_starts(receiver: TestClient) -> None:
    post(receiver, envelope("TransferProcessStarted", TP))
    post(receiver, envelope("TransferProcessCompleted", TP, envelope_id="done-1", at=1_700_000_000_000))
    payload = await first_trigger_event(make_trigger())
    assert payload["status"] == "success"
    assert payload["state"] == "COMPLETED"
    assert payload["source"] == "callback"
    assert payload["asset_id"] == "demo-asset"
    assert payload["contract_id"] == "contract-1"
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]
    assert payload["timeline"][1]["at"] == 1_700_000_000_000
    assert payload["timeline"][1]["envelope_id"] == "done-1"


async def test_waits_on_listener_then_resumes(receiver: TestClient) -> None:
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    await asyncio.to_thread(post, receiver, envelope("TransferProcessStarted", TP))
    await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", TP))
    payload = await asyncio.wait_for(task, 10)
    assert payload["status"] == "success"
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]


async def test_pull_resumes_on_started_without_edr_in_payload(receiver: TestClient) -> None:
    edr = {"properties": {"https://w3id.org/edc/v0.0.1/ns/authorization": "secret-token"}}
    post(receiver, envelope("TransferProcessStarted", TP, dataAddress=edr))
    payload = await first_trigger_event(make_trigger(wait_for="started"))
    assert payload["state"] == "STARTED"
    assert "secret-token" not in json.dumps(payload)


async def test_terminated_carries_connector_reason(receiver: TestClient) -> None:
    post(receiver, envelope("TransferProcessTerminated", TP, reason="Source answered 500"))
    payload = await first_trigger_event(make_trigger())
    assert payload["status"] == "failed"
    assert payload["state"] == "TERMINATED"
    assert payload["reason"] == "Source answered 500"


async def test_duplicate_delivery_stores_once_and_resumes_once(receiver: TestClient) -> None:
    body = envelope("TransferProcessCompleted", TP)
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    for _ in range(3):  # EDC re-POSTs the same envelope after a read timeout
        await asyncio.to_thread(post, receiver, body)
    payload = await asyncio.wait_for(task, 10)
    assert len(payload["timeline"]) == 1
    assert [e.envelope_id for e in get_store().events(process_id=TP)] == [body["id"]]
    # two copies of the trigger (HA) produce the same payload, which Airflow deduplicates
    other = await first_trigger_event(make_trigger())
    assert other == payload


async def test_events_of_other_transfers_are_ignored(receiver: TestClient) -> None:
    post(receiver, envelope("TransferProcessCompleted", "tp-of-an-earlier-try"))
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done, "an event of another transfer process resumed the trigger"
    await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", TP))
    payload = await asyncio.wait_for(task, 10)
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessCompleted"]


def _start_trigger_process(env: dict[str, str]) -> subprocess.Popen[str]:
    classpath, kwargs = make_trigger().serialize()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.run_trigger", classpath, json.dumps(kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # log lines come first; READY once it waits on the listener
        if line.strip() == "READY":
            return proc
    proc.kill()
    raise AssertionError(f"trigger process exited with {proc.wait()} before waiting")


def test_triggerer_restart_while_waiting_still_resumes(receiver: TestClient) -> None:
    env = dict(os.environ)
    first = _start_trigger_process(env)
    second = None
    try:
        post(receiver, envelope("TransferProcessStarted", TP))
        os.killpg(first.pid, signal.SIGKILL)  # the triggerer dies while the trigger waits
        first.wait(timeout=10)
        post(receiver, envelope("TransferProcessCompleted", TP))  # arrives while no trigger runs
        second = _start_trigger_process(env)  # the trigger is re-created from its serialized kwargs
        second.wait(timeout=30)  # its output is small; read it from the same buffered pipe afterwards
        assert second.stdout is not None
        out = second.stdout.read()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    payloads = [line for line in out.splitlines() if line.startswith('{"status"')]
    assert payloads, f"the restarted trigger printed no event:\n{out}"
    payload = json.loads(payloads[-1])
    assert payload["status"] == "success"
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]


async def test_event_held_until_not_before(receiver: TestClient) -> None:
    """The event waits until the deferring worker has exited (Airflow marks early resumes FAILED)."""
    import time

    post(receiver, envelope("TransferProcessCompleted", TP))
    not_before = time.time() + 0.5
    payload = await first_trigger_event(make_trigger(not_before=not_before))
    assert time.time() >= not_before
    assert payload["status"] == "success"


STATIC_CONN = {"conn_type": "edc_static_callback", "password": "st", "extra": {"events": ["transfer.process"]}}


def post_static(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/callbacks/static/cb1", json=body, headers={"X-Edc-Callback-Auth": "st"})
    assert response.status_code == 200, response.text


async def test_static_callback_alone_resumes(receiver: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dynamic callback never arrives; the connector's static callback does."""
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB1", json.dumps(STATIC_CONN))
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    await asyncio.to_thread(post_static, receiver, envelope("TransferProcessCompleted", TP))
    payload = await asyncio.wait_for(task, 10)
    assert payload["status"] == "success"
    assert payload["timeline"][0]["routes"] == ["static:cb1"]


async def test_same_event_by_static_and_dynamic_route_resumes_once(
    receiver: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB1", json.dumps(STATIC_CONN))
    started = envelope("TransferProcessStarted", TP)
    completed = envelope("TransferProcessCompleted", TP)
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await until_subscribed()
    for body in (started, completed):  # EDC calls static callbacks first, then the dynamic ones
        await asyncio.to_thread(post_static, receiver, body)
        await asyncio.to_thread(post, receiver, body)
    payload = await asyncio.wait_for(task, 10)
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]
    stored = get_store().events(process_id=TP)
    assert [e.envelope_id for e in stored] == [started["id"], completed["id"]]
    assert all(e.routes == ("static:cb1", "dynamic") for e in stored)


async def test_trigger_without_token_follows_events_whatever_route_came_first(receiver: TestClient) -> None:
    """A sensor's trigger (no correlation id) on a transfer another task started (and bound) and waits for:
    the dynamic callback with that task's token counts, whatever route comes later."""
    get_store().bind(TP, "another-task")  # what the other task's operator did when it started TP
    post(receiver, envelope("TransferProcessCompleted", TP), correlation="another-task")
    payload = await first_trigger_event(make_trigger(correlation_id=None))
    assert payload["status"] == "success"
    assert payload["correlation_id"] is None


async def test_negotiation_trigger_resumes_on_finalized_with_the_agreement(receiver: TestClient) -> None:
    from airflow_edc_callbacks.triggers import EdcNegotiationTrigger

    trigger = EdcNegotiationTrigger(
        correlation_id=CORRELATION, contract_negotiation_id="cn-1", fallback_check_interval=3600, stall_timeout=90
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_edc_callbacks.triggers.negotiation.EdcNegotiationTrigger"
    assert kwargs["stall_timeout"] == 90
    assert EdcNegotiationTrigger(**kwargs).serialize() == (classpath, kwargs)
    for event_type in ("ContractNegotiationRequested", "ContractNegotiationFinalized"):
        body = {
            "id": f"env-{event_type}",
            "at": 1_700_000_000_000,
            "type": event_type,
            "payload": {
                "contractNegotiationId": "cn-1",
                "counterPartyId": "provider",
                "contractAgreement": {"id": "agreement-1", "assetId": "demo-asset"}
                if event_type.endswith("Finalized")
                else None,
            },
        }
        post(receiver, body)
    post(receiver, envelope("TransferProcessCompleted", "cn-1"))  # a transfer event never ends a negotiation wait
    payload = await first_trigger_event(trigger)
    assert (payload["status"], payload["state"], payload["contract_agreement_id"]) == (
        "success",
        "FINALIZED",
        "agreement-1",
    )
    assert (payload["asset_id"], payload["counter_party_id"]) == ("demo-asset", "provider")
    assert [t["type"] for t in payload["timeline"]] == ["ContractNegotiationRequested", "ContractNegotiationFinalized"]


async def test_a_waiting_trigger_holds_its_events_against_retention(receiver: TestClient) -> None:
    """While the trigger waits, retention keeps its transfer's events, however old; once it fired, the
    hold is released and the events age out like any others."""
    from datetime import timedelta

    store = get_store()
    post(receiver, envelope("TransferProcessStarted", TP))
    task = asyncio.ensure_future(first_trigger_event(make_trigger(), 10))
    await until_subscribed()
    await asyncio.to_thread(wait_until, lambda: store.holds(), 5, "the trigger's hold")
    [(_, process_id, correlation_id, _)] = store.holds()
    assert (process_id, correlation_id) == (TP, CORRELATION)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edc_callback_event SET received_at = received_at - CAST(30 AS BIGINT) * 86400000")
    assert await asyncio.to_thread(store.purge, timedelta(days=7)) == 0
    await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", TP))
    payload = await task
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]
    await asyncio.to_thread(wait_until, lambda: store.holds() == [], 5, "the hold's release")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edc_callback_event SET received_at = received_at - CAST(30 AS BIGINT) * 86400000")
    assert await asyncio.to_thread(store.purge, timedelta(days=7)) == 2


async def test_cancelled_while_starting_leaves_no_subscription_or_hold(
    edc_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow cancels triggers whose task was cleared or timed out, also one still reading the store:
    its subscription and its hold on the events go with it."""
    reading = asyncio.Event()
    never = asyncio.Event()

    async def blocked_read(self: Waiter) -> list[Any]:
        reading.set()
        await never.wait()
        return []

    monkeypatch.setattr(Waiter, "_read", blocked_read)  # the trigger's engine reads the store
    store = get_store(waiting=True)
    task = asyncio.ensure_future(first_trigger_event(make_trigger()))
    await asyncio.wait_for(reading.wait(), 10)
    listener = get_listener(store)
    assert listener.subscription_count == 1
    assert len(store.holds()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert listener.subscription_count == 0
    await asyncio.to_thread(wait_until, lambda: store.holds() == [], 10, "the hold to be released")


async def test_cancelled_while_its_hold_is_written_releases_the_hold_after_it(edc_config: str) -> None:
    """The hold's write goes on in its thread after a cancel; the release must come after it, or the
    hold would outlive the trigger."""
    store = get_store(waiting=True)
    writing = threading.Event()
    proceed = threading.Event()
    released = threading.Event()
    order: list[str] = []
    original_hold, original_release = store.hold, store.release

    def slow_hold(*args: Any, **kwargs: Any) -> None:
        writing.set()
        proceed.wait(10)
        original_hold(*args, **kwargs)
        order.append("hold")

    def release(holder: str) -> None:
        order.append("release")
        released.set()
        original_release(holder)

    store.hold = slow_hold  # type: ignore[method-assign]
    store.release = release  # type: ignore[method-assign]
    try:
        task = asyncio.ensure_future(first_trigger_event(make_trigger()))
        await asyncio.to_thread(writing.wait, 10)
        task.cancel()
        # give a premature release every chance to happen while the hold is still being written
        assert not await asyncio.to_thread(released.wait, 1.0)
        proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        del store.hold, store.release
    assert order == ["hold", "release"]
    assert store.holds() == []
    assert get_listener(store).subscription_count == 0
