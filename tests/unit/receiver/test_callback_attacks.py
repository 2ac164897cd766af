"""An independent attack on callback trust (issue 10's acceptance): a valid token of one task, no token,
hostile but well-formed input, store faults. Each test names what held, or what an attack found and how
it is closed; all through the public surface (receiver HTTP, triggers, sensor trigger, hook, CLI)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration
from airflow_edc_callbacks.store import get_listener, get_store
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger, EdcNegotiationTrigger
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope, first_trigger_event

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


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_events_json_lists_a_body_of_one_long_run_of_jwt_prefixes(receiver: TestClient, store_url: str) -> None:
    """Found: the JWT redaction rescanned a run of base64url characters from every ``eyJ`` in it
    (quadratic): one accepted 1 MiB string ``eyJeyJ...`` kept ``airflow-edc-callbacks events --json``
    busy for about 20 minutes. The same redaction runs on every request path (the receiver's path
    middleware and the access-log filter, no token needed): a 16 KiB path cost 0.3 s of the event loop."""
    body = envelope("TransferProcessInitiated", "tp-unbound", note="eyJ" * 330_000)
    assert post(receiver, body).status_code == 200
    env = {**os.environ, "AIRFLOW__EDC_CALLBACKS__STORE_URL": store_url}
    script = str(Path(sys.executable).parent / "airflow-edc-callbacks")
    listed = subprocess.run([script, "events", "--json"], capture_output=True, text=True, env=env, timeout=90)
    assert listed.returncode == 0, listed.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=listed.stdout, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 0
    [shown] = json.loads(listed.stdout)
    assert shown["body"]["payload"]["note"] == body["payload"]["note"]  # no JWT in it: shown as it is


# -- attacks that failed (the code held) ----------------------------------------------------------------


def negotiation_event(event_type: str, negotiation_id: str, **payload: Any) -> dict[str, Any]:
    body = envelope(event_type, "unused", **payload)
    body["payload"] = {"contractNegotiationId": negotiation_id, "type": "CONSUMER", **payload}
    return body


async def test_a_token_of_another_task_cannot_finalize_or_fail_its_negotiation(receiver: TestClient) -> None:
    """The attacker's early Terminated lands before the victim binds its negotiation; after the binding
    his posts are 403; the victim's own (early and late) events count. A negotiation event that names
    the victim's transfer in its payload is about its own negotiation only."""
    negotiation = "cn-b"
    early = negotiation_event("ContractNegotiationTerminated", negotiation, reason="forged")
    assert post(receiver, early).status_code == 200
    assert post(receiver, negotiation_event("ContractNegotiationRequested", negotiation), TASK_B).status_code == 200
    get_store().bind(negotiation, TASK_B)
    get_store().bind(B, TASK_B)
    late = negotiation_event("ContractNegotiationTerminated", negotiation, reason="forged")
    assert post(receiver, late).status_code == 403
    disguised = negotiation_event("ContractNegotiationTerminated", "cn-attacker", transferProcessId=B)
    assert post(receiver, disguised).status_code == 200  # about the attacker's own (unbound) negotiation
    trigger = EdcNegotiationTrigger(
        correlation_id=TASK_B, contract_negotiation_id=negotiation, conn_id="edc_unused", fallback_check_interval=3600
    )
    waiting = asyncio.ensure_future(first_trigger_event(trigger))
    listener = get_listener(get_store(waiting=True))
    await until(lambda: listener.subscription_count >= 1, "the trigger to subscribe")
    finalized = negotiation_event("ContractNegotiationFinalized", negotiation)
    assert (await asyncio.to_thread(post, receiver, finalized, TASK_B)).status_code == 200
    payload = await waiting
    assert payload["status"] == "success"
    assert [e["type"] for e in payload["timeline"]] == ["ContractNegotiationRequested", "ContractNegotiationFinalized"]
    assert get_store().events(process_id=B) == []  # what B's transfer waiter, sensor and EDR read


@pytest.mark.parametrize(
    "token",
    [
        ".",
        f".{make_token(SIGNING_KEY, TASK_A).split('.')[1]}",
        TASK_A,
        f"{TASK_A}.",
        f"{make_token(SIGNING_KEY, TASK_A)}=",
        f"{make_token(SIGNING_KEY, TASK_A)}.x",
        make_token(SIGNING_KEY, TASK_A).upper(),
        make_token(SIGNING_KEY, TASK_A).replace(TASK_A, TASK_B),
        make_token(b"test-signing-key-012345678", TASK_A),
        make_token(SIGNING_KEY, "x" * 128) + "y",
        f"{make_token(SIGNING_KEY, TASK_A)}/",
        "static",
    ],
)
def test_no_odd_token_is_accepted_and_nothing_is_stored_without_a_correlation(receiver: TestClient, token: str) -> None:
    """A dynamic route stores nothing but under a verified correlation id (``StoredEvent.trusted`` treats a
    missing one as a static event): every mangled token is 404 (or 405), nothing stored."""
    answer = receiver.post(f"/callbacks/{token}", json=envelope("TransferProcessCompleted", B))
    assert answer.status_code in (404, 405), answer.text
    assert get_store().events() == []


async def test_a_watcher_restarted_fires_on_an_event_whose_static_copy_came_after_it_stopped(
    receiver: TestClient,
) -> None:
    """The cursor never passes an event still waiting for its static copy, not even when a later event
    fires: a watcher that stopped meanwhile fires on it once its static copy arrives."""
    name = "waits-for-static-copy"
    waiting = envelope("TransferProcessCompleted", "tp-waiting", type="PROVIDER")
    runs = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER", name=name).run()
    first = asyncio.ensure_future(runs.__anext__())
    listener = get_listener(get_store(waiting=True))
    await until(lambda: listener.subscription_count >= 1, "the watcher to subscribe")
    assert (await asyncio.to_thread(post, receiver, waiting)).status_code == 200  # dynamic: waits
    later = envelope("TransferProcessCompleted", "tp-later", type="PROVIDER")
    assert (await asyncio.to_thread(post_static, receiver, later)).status_code == 200
    fired = await asyncio.wait_for(first, 10)
    assert fired.payload["process_id"] == "tp-later"
    await runs.aclose()  # stopped at its yield: a clean stop
    assert (get_store().cursor(name) or 0) < get_store().events(process_id="tp-waiting")[0].seq
    assert (await asyncio.to_thread(post_static, receiver, waiting)).status_code == 200  # its static copy
    again = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER", name=name).run()
    try:
        event = await asyncio.wait_for(again.__anext__(), 10)
    finally:
        await again.aclose()
    assert event.payload["process_id"] == "tp-waiting"


async def test_a_watcher_saves_its_cursor_past_events_it_decided_not_to_fire_on(receiver: TestClient) -> None:
    """Found: a token's holder posts events no watcher fires on (any dynamic event, up to the retention and
    the disk); every restart of the triggerer, and every store outage a watcher recovers from, then loads
    all of them at once into the triggerer's memory, once per watcher."""
    name = "cursor-moves"
    runs = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER", name=name).run()
    fired = asyncio.ensure_future(runs.__anext__())
    try:
        listener = get_listener(get_store(waiting=True))
        await until(lambda: listener.subscription_count >= 1, "the watcher to subscribe")
        for index in range(3):
            other = envelope("TransferProcessInitiated", f"tp-{index}", type="CONSUMER")
            assert (await asyncio.to_thread(post_static, receiver, other)).status_code == 200
        last = get_store().max_seq()
        await until(lambda: (get_store().cursor(name) or 0) >= last, "the cursor to pass the decided events", 5)
    finally:  # let the watcher fire once, so it stops cleanly
        ending = envelope("TransferProcessCompleted", "tp-end", type="PROVIDER")
        assert (await asyncio.to_thread(post_static, receiver, ending)).status_code == 200
        await asyncio.wait_for(fired, 10)
        await runs.aclose()


# -- static secrets -------------------------------------------------------------------------------------


def _static_app(store_url: str, lookup: Any, refresh_seconds: float) -> Any:
    settings = ReceiverSettings(
        store_url=store_url,
        signing_key=SIGNING_KEY,
        auth=None,
        auth_from_config=False,
        static_lookup=lookup,
        static_refresh_seconds=refresh_seconds,
    )
    return create_app(settings)


def test_wrong_static_secrets_do_not_each_cost_a_registration_lookup(store_url: str) -> None:
    """Found (no token needed): every request to a registered static name with a wrong secret was a
    metastore or secrets-backend query, at the request rate of anyone who can reach the receiver. Now 20
    concurrent guesses cost one fresh lookup, and sequential guesses at most one per refresh interval."""
    calls: list[float] = []  # when each lookup started (time.monotonic())
    registration = StaticCallbackRegistration(name="prov", secret="st", events=("transfer.process",))

    def lookup(name: str) -> StaticCallbackRegistration | None:
        calls.append(time.monotonic())
        return registration if name == "prov" else None

    app = _static_app(store_url, lookup, refresh_seconds=0.5)

    async def guess(client: httpx.AsyncClient, attempt: int) -> int:
        headers = {"X-Edc-Callback-Auth": f"guess-{attempt}"}
        return (await client.post("/callbacks/static/prov", json=envelope(), headers=headers)).status_code

    async def attack() -> tuple[list[int], list[int], float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            concurrent = await asyncio.gather(*(guess(client, attempt) for attempt in range(20)))
            started = time.monotonic()
            sequential = [await guess(client, attempt) for attempt in range(20, 24)]
            return list(concurrent), sequential, time.monotonic() - started

    concurrent, sequential, elapsed = asyncio.run(attack())
    assert concurrent == [401] * 20
    assert sequential == [401] * 4
    # the first lookup; for the 20, one fresh lookup (and one more for those that asked after it started);
    # then one per sequential guess: 24 wrong secrets, at most 7 lookups, fresh ones 0.5 s apart at least
    assert 2 <= len(calls) <= 7
    fresh = calls[1:]
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(fresh)]
    assert [gap >= 0.5 for gap in gaps] == [True] * len(gaps), gaps
    assert elapsed >= 3 * 0.5  # each sequential guess waited for its own interval


def test_a_static_secret_rotated_right_after_wrong_guesses_is_accepted(store_url: str) -> None:
    """The rate limit never refuses the rotated secret: a request that finds the cached secret wrong
    waits for the next fresh lookup (at most one interval) and is answered by it."""
    calls: list[str] = []
    current = {"secret": "old"}

    def lookup(name: str) -> StaticCallbackRegistration | None:
        calls.append(name)
        return StaticCallbackRegistration(name="prov", secret=current["secret"], events=("transfer.process",))

    with TestClient(_static_app(store_url, lookup, refresh_seconds=0.3)) as client:

        def post(secret: str, process: str) -> int:
            body = envelope("TransferProcessInitiated", process)
            headers = {"X-Edc-Callback-Auth": secret}
            return client.post("/callbacks/static/prov", json=body, headers=headers).status_code

        assert post("old", "tp-before") == 200
        assert post("guess", "tp-guess") == 401  # a fresh lookup: the rate limit's interval starts
        current["secret"] = "new"
        assert post("new", "tp-after") == 200  # within the interval: waited for the next lookup
        assert post("old", "tp-stale") == 401
    assert len(calls) == 4  # the first, and one fresh lookup for each wrong secret
