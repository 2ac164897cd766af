"""Callback trust, tried as an attacker would: a valid token of one task, hostile but well-formed input, a
store that cannot be used. Every test goes through the public surface (receiver HTTP, operators, sensor
trigger, watcher trigger, hook) on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from airflow_edc_callbacks.exceptions import EdcEdrNotFound
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import MAX_EPOCH_MS, MAX_JSON_DEPTH
from airflow_edc_callbacks.operators import EdcTransferOperator
from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.store import get_listener, get_store
from airflow_edc_callbacks.tokens import correlation_id_for, make_token
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger, EdcCallbackTrigger
from tests.airflow_compat import TaskDeferred
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope, first_trigger_event

STATIC = {"conn_type": "edc_static_callback", "password": "st", "extra": {"events": ["transfer.process", "asset"]}}
TASK_A = "task-a"  # the attacker holds this task's valid token
TASK_B = "task-b"  # the victim task, which started transfer B
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


def sensor_trigger(process_id: str = B) -> EdcCallbackTrigger:
    """What ``EdcTransferSensor(transfer_process_id=...)`` defers to."""
    return EdcCallbackTrigger(
        correlation_id=None, transfer_process_id=process_id, conn_id="edc_unused", fallback_check_interval=3600
    )


def task_trigger(correlation: str = TASK_B, process_id: str = B) -> EdcCallbackTrigger:
    """What ``EdcTransferOperator`` defers to."""
    return EdcCallbackTrigger(
        correlation_id=correlation, transfer_process_id=process_id, conn_id="edc_unused", fallback_check_interval=3600
    )


async def until_subscribed(count: int = 1) -> None:
    listener = get_listener(get_store(waiting=True))
    deadline = asyncio.get_running_loop().time() + 5
    while listener.subscription_count < count:
        assert asyncio.get_running_loop().time() < deadline, "the trigger never subscribed"
        await asyncio.sleep(0.01)


# -- binding ---------------------------------------------------------------------------------------


def test_the_operator_binds_the_transfer_it_starts_and_other_tokens_are_refused(
    receiver: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"@type": "IdResponse", "@id": B})

    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": "http://c/management"}))
    op = EdcTransferOperator(
        task_id="push",
        contract_id="agreement-1",
        counter_party_address="http://p/protocol",
        transfer_type="HttpData-PUSH",
        deferrable=True,
    )
    monkeypatch.setattr(
        op, "_hook", lambda: EdcManagementHook(transport=httpx.MockTransport(answer), ledger=StoreLedger())
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="push", map_index=-1, try_number=1)
    with pytest.raises(TaskDeferred):
        op.execute({"ti": ti})  # type: ignore[arg-type]
    correlation = correlation_id_for("d", "r", "push", -1)
    assert get_store().binding(B) == correlation

    forged = post(receiver, envelope("TransferProcessTerminated", B, reason="forged"), correlation=TASK_A)
    assert forged.status_code == 403
    assert B in forged.json()["detail"]
    assert get_store().events(process_id=B) == []
    assert post(receiver, envelope("TransferProcessCompleted", B), correlation=correlation).status_code == 200


def test_the_hook_binds_what_it_starts_to_the_callback_tokens_of_this_deployment(
    edc_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Custom code that starts processes through the hook gets the same binding as the operators."""
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": "http://c/management"}))
    new_ids = iter(["tp-ours", "tp-foreign", "cn-ours"])
    hook = EdcManagementHook(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"@id": next(new_ids)})),
        ledger=StoreLedger(),
    )

    def transfer_request(uri: str) -> dict[str, Any]:
        return hook.build_transfer_request(
            counter_party_address="http://p/protocol",
            contract_id="agreement-1",
            transfer_type="HttpData-PULL",
            callback_addresses=[hook.callback_address(uri)],
        )

    ours = f"http://airflow/edc-callbacks/callbacks/{make_token(SIGNING_KEY, TASK_B)}"
    assert hook.start_transfer(transfer_request(ours)) == "tp-ours"
    foreign = f"http://elsewhere/callbacks/{make_token(b'not-our-key', TASK_A)}"
    assert hook.start_transfer(transfer_request(foreign)) == "tp-foreign"
    negotiation = {"callbackAddresses": [hook.callback_address(ours, events=["contract.negotiation"])]}
    assert hook.start_negotiation(negotiation) == "cn-ours"
    store = get_store()
    assert (store.binding("tp-ours"), store.binding("tp-foreign"), store.binding("cn-ours")) == (TASK_B, None, TASK_B)


async def test_a_sensor_acts_only_on_static_and_bound_events(receiver: TestClient) -> None:
    """The attacker's event lands before the victim's operator binds B (callbacks can beat the connector's
    answer): it is stored, but never counts; the victim's own early event counts once B is bound."""
    assert post(receiver, envelope("TransferProcessTerminated", B, reason="forged"), TASK_A).status_code == 200
    assert post(receiver, envelope("TransferProcessInitiated", B), TASK_B).status_code == 200
    get_store().bind(B, TASK_B)  # what the victim's operator does when the connector answers
    sensor = asyncio.ensure_future(first_trigger_event(sensor_trigger()))
    task = asyncio.ensure_future(first_trigger_event(task_trigger()))
    await until_subscribed(2)
    assert (await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", B), TASK_B)).status_code == 200
    for payload in (await sensor, await task):
        assert (payload["status"], payload["reason"]) == ("success", None)
        assert [e["type"] for e in payload["timeline"]] == ["TransferProcessInitiated", "TransferProcessCompleted"]


async def test_a_sensor_follows_a_static_callback_whatever_the_tokens_say(receiver: TestClient) -> None:
    assert post(receiver, envelope("TransferProcessTerminated", B, reason="forged"), TASK_A).status_code == 200
    sensor = asyncio.ensure_future(first_trigger_event(sensor_trigger()))
    await until_subscribed()
    assert (await asyncio.to_thread(post_static, receiver, envelope("TransferProcessCompleted", B))).status_code == 200
    payload = await sensor
    assert (payload["status"], payload["event_type"]) == ("success", "TransferProcessCompleted")


async def test_an_early_event_counts_for_a_sensor_once_its_process_is_bound(receiver: TestClient) -> None:
    sensor = asyncio.ensure_future(first_trigger_event(sensor_trigger()))
    await until_subscribed()
    assert (await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", B), TASK_B)).status_code == 200
    await asyncio.to_thread(get_store().bind, B, TASK_B)
    # the next event of B (any route) makes the sensor read the binding and take the held-back event
    assert (
        await asyncio.to_thread(post, receiver, envelope("TransferProcessDeprovisioned", B), TASK_B)
    ).status_code == 200
    payload = await sensor
    assert (payload["status"], payload["event_type"]) == ("success", "TransferProcessCompleted")


async def test_a_token_of_another_task_cannot_start_a_watcher_run(receiver: TestClient) -> None:
    watcher = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER")
    first = asyncio.ensure_future(first_trigger_event(watcher))
    await until_subscribed()
    forged = envelope("TransferProcessCompleted", "tp-x", type="PROVIDER")
    assert (await asyncio.to_thread(post, receiver, forged, TASK_A)).status_code == 200
    genuine = envelope("TransferProcessCompleted", "tp-y", type="PROVIDER")
    assert (await asyncio.to_thread(post_static, receiver, genuine)).status_code == 200
    payload = await first
    assert payload["process_id"] == "tp-y"


def test_a_token_of_another_task_cannot_feed_an_edr(receiver: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connector has no EDR cache, so the hook falls back to the stored TransferProcessStarted."""
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": "http://c/management"}))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/state"):
            return httpx.Response(200, json={"state": "STARTED"})
        return httpx.Response(404, json=[{"message": "Object not found", "type": "ObjectNotFound"}])

    hook = EdcManagementHook(transport=httpx.MockTransport(answer), retries=0, ledger=StoreLedger())

    def started(endpoint: str) -> dict[str, Any]:
        address = {"endpoint": endpoint, "authorization": "tok", "authType": "bearer"}
        return envelope("TransferProcessStarted", B, dataAddress=address)

    assert post(receiver, started("http://169.254.169.254/latest"), TASK_A).status_code == 200
    get_store().bind(B, TASK_B)
    with pytest.raises(EdcEdrNotFound, match="no TransferProcessStarted callback is stored that may be trusted"):
        hook.get_edr(B)
    assert post(receiver, started("http://provider/public"), TASK_B).status_code == 200
    assert hook.get_edr(B).endpoint == "http://provider/public"
    # a later event posted with the attacker's token does not switch the fallback off: it is refused
    assert post(receiver, envelope("TransferProcessTerminated", B), TASK_A).status_code == 403
    assert hook.get_edr(B).endpoint == "http://provider/public"
    # nor can the bound task's own token (leaked) re-announce its transfer with another endpoint
    assert post(receiver, started("http://169.254.169.254/latest"), TASK_B).status_code == 200
    with pytest.raises(EdcEdrNotFound, match="name different endpoints"):
        hook.get_edr(B)


# -- duplicates ------------------------------------------------------------------------------------


def test_same_id_with_another_body_is_a_logged_and_counted_conflict(
    receiver: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    monkeypatch.setattr("airflow_edc_callbacks.metrics.incr", lambda name, count=1: counted.append(name))
    body = envelope("TransferProcessCompleted", B, envelope_id="env-1")
    assert post(receiver, body, TASK_B).json()["status"] == "stored"
    same_keys_reordered = dict(reversed(list(body.items())))
    assert post(receiver, same_keys_reordered, TASK_B).json()["status"] == "duplicate"
    other = envelope("TransferProcessTerminated", B, envelope_id="env-1", reason="forged")
    with caplog.at_level(logging.WARNING, logger="airflow_edc_callbacks.receiver.events"):
        for answer in (post(receiver, other, TASK_B), post_static(receiver, other)):
            assert answer.status_code == 409
    assert sum("env-1" in r.getMessage() and "another body" in r.getMessage() for r in caplog.records) == 2
    assert counted == ["callback.accepted", "callback.duplicate", "callback.conflict", "callback.conflict"]
    [stored] = get_store().events(process_id=B)
    assert (stored.event_type, stored.body, stored.routes) == ("TransferProcessCompleted", body, ("dynamic",))


async def test_a_duplicate_through_another_token_cannot_take_over_a_static_event(receiver: TestClient) -> None:
    body = envelope("TransferProcessCompleted", B)
    assert post_static(receiver, body).status_code == 200
    assert post(receiver, body, TASK_A).json()["status"] == "duplicate"
    [stored] = get_store().events(process_id=B)
    assert stored.correlation_id is None
    payload = await first_trigger_event(task_trigger())
    assert (payload["status"], payload["event_type"]) == ("success", "TransferProcessCompleted")


# -- one input domain ------------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param({"at": 10**15}, 422, id="at-past-year-9999"),
        pytest.param({"at": MAX_EPOCH_MS + 1}, 422, id="at-one-past-the-limit"),
        pytest.param({"id": "evt\r\nINFO forged line"}, 422, id="crlf-in-id"),
        pytest.param({"type": "TransferProcessCompleted\n"}, 422, id="lf-in-type"),
        pytest.param({"payload": {"transferProcessId": "tp\u2028x"}}, 422, id="line-separator-in-process-id"),
        pytest.param({"extra": nested(MAX_JSON_DEPTH)}, 422, id="one-level-too-deep"),
        pytest.param({"payload": {"transferProcessId": "tp", "x": {"k\ud800": 1}}}, 422, id="lone-surrogate-key"),
        pytest.param({"payload": {"transferProcessId": "tp-b\u200b"}}, 422, id="zero-width-space-in-process-id"),
        pytest.param({"id": "evt\u202egnp.exe"}, 422, id="bidi-override-in-id"),
    ],
)
def test_input_outside_the_domain_is_refused_and_nothing_stored(
    receiver: TestClient, change: dict[str, Any], status: int
) -> None:
    body = {**envelope("TransferProcessCompleted", B), **change}
    response = receiver.post(
        f"/callbacks/{make_token(SIGNING_KEY, TASK_B)}",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert get_store().events() == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param('{"id": "x", "at": 1, "type": "T", "payload": {}', id="truncated"),
        pytest.param('{"id": "x", "at": ' + "9" * 5000 + ', "type": "T", "payload": {}}', id="5000-digit-integer"),
        pytest.param('{"id": "x", "at": NaN, "type": "T", "payload": {}}', id="nan"),
        pytest.param('{"id": "x", "at": 1, "type": "T", "payload": {"v": Infinity}}', id="infinity"),
        pytest.param('{"id": "x", "at": 1, "type": "T", "payload": {"v": 1e400}}', id="float-out-of-range"),
    ],
)
def test_unparseable_json_is_400(receiver: TestClient, content: str) -> None:
    response = receiver.post(
        f"/callbacks/{make_token(SIGNING_KEY, TASK_B)}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert get_store().events() == []


async def test_the_edges_of_the_domain_are_stored_and_every_reader_copes(receiver: TestClient) -> None:
    deepest = {**envelope("TransferProcessStarted", B, at=MAX_EPOCH_MS), "extra": nested(MAX_JSON_DEPTH - 1)}
    assert post(receiver, deepest, TASK_B).status_code == 200
    assert post(receiver, envelope("TransferProcessCompleted", B, at=0), TASK_B).status_code == 200
    payload = await first_trigger_event(task_trigger())  # logs both times (years 9999 and 1970)
    assert [e["at"] for e in payload["timeline"]] == [MAX_EPOCH_MS, 0]


# -- other event types -----------------------------------------------------------------------------


async def test_events_about_no_process_are_acknowledged_and_never_reach_a_transfer_waiter(
    receiver: TestClient,
) -> None:
    asset_events = [
        {"id": f"asset-{i}", "at": 1_700_000_000_000, "type": "AssetCreated", "payload": {"assetId": f"a{i}"}}
        for i in range(2)
    ]
    policy = {"id": "p-1", "at": 1, "type": "PolicyDefinitionCreated", "payload": {"cls": 7, "type": [], "self": {}}}
    disguised = {"id": "d-1", "at": 1, "type": "AssetUpdated", "payload": {"transferProcessId": B, "reason": "forged"}}
    watcher = EdcCallbackEventTrigger(event_types=["Asset"])
    runs = watcher.run()
    fired = asyncio.ensure_future(runs.__anext__())
    waiting = asyncio.ensure_future(first_trigger_event(task_trigger()))
    await until_subscribed(2)
    answer = await asyncio.to_thread(post, receiver, asset_events[0], TASK_B)
    assert answer.json() == {"status": "ignored", "id": "asset-0"}  # a dynamic token: acknowledged, not stored
    for body in (*asset_events, policy, disguised):
        assert (await asyncio.to_thread(post_static, receiver, body)).json()["status"] == "stored"
    try:
        first = (await asyncio.wait_for(fired, 10)).payload
        second = (await asyncio.wait_for(runs.__anext__(), 10)).payload
    finally:
        await runs.aclose()
    assert [first["envelope_id"], second["envelope_id"]] == ["asset-0", "asset-1"]  # each event once
    assert [e.process_id for e in get_store().events()] == [None, None, None, None]
    assert not waiting.done()
    assert (await asyncio.to_thread(post, receiver, envelope("TransferProcessCompleted", B), TASK_B)).status_code == 200
    payload = await waiting
    assert [e["type"] for e in payload["timeline"]] == ["TransferProcessCompleted"]


# -- store faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "store_url",
    [
        pytest.param("sqlite:////proc/edc-callbacks-cannot-be-here/events.db", id="sqlite-cannot-be-created"),
        pytest.param("postgresql+psycopg://postgres@127.0.0.1:9/events?connect_timeout=2", id="postgresql-down"),
    ],
)
def test_a_store_that_cannot_be_opened_is_503_never_500(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_PROV", json.dumps(STATIC))
    settings = ReceiverSettings(store_url=store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for _ in range(2):  # and again on the next request: it is tried every time
            answer = post(client, envelope(), TASK_B)
            assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5")
            assert post_static(client, envelope()).status_code == 503
            health = client.get("/health")
            assert (health.status_code, health.headers.get("Retry-After")) == (503, "5")
        assert client.post("/callbacks/task-b.forged", json=envelope()).status_code == 404
        assert client.post("/callbacks/static/nobody", json=envelope()).status_code == 404


# -- key rotation ----------------------------------------------------------------------------------


def test_a_rotated_signing_key_strands_no_waiting_task(edc_config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_edc_callbacks.tokens import callback_url

    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    old_token = make_token(b"old-key", "waiting-task")  # handed out before the rotation
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY", "new-key, old-key")
    settings = ReceiverSettings(store_url=edc_config, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as client:
        assert client.post(f"/callbacks/{old_token}", json=envelope(process_id="tp-old")).status_code == 200
        new_url = callback_url("new-task")
        assert new_url == f"http://airflow/edc-callbacks/callbacks/{make_token(b'new-key', 'new-task')}"
        assert (
            client.post(f"/callbacks/{new_url.rsplit('/', 1)[1]}", json=envelope(process_id="tp-new")).status_code
            == 200
        )
        retired = make_token(b"retired-key", "waiting-task")
        assert client.post(f"/callbacks/{retired}", json=envelope(process_id="tp-x")).status_code == 404


# -- watchers: static routes only, and no event lost to commit order ------------------------------------


async def test_a_tasks_own_token_cannot_start_a_watcher_run(receiver: TestClient) -> None:
    """Task A's process is bound to A, so A's token may post about it; but only the connector's own
    (static) stream schedules DAG runs, whatever such a post claims (a provider process, any asset)."""
    get_store().bind("tp-a", TASK_A)
    watcher = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER")
    first = asyncio.ensure_future(first_trigger_event(watcher))
    await until_subscribed()
    for event_type in ("TransferProcessCompleted", "TransferProcessCompletedX1"):
        forged = envelope(event_type, "tp-a", type="PROVIDER", assetId="victim-asset")
        assert (await asyncio.to_thread(post, receiver, forged, TASK_A)).status_code == 200
    genuine = envelope("TransferProcessCompleted", "tp-provider", type="PROVIDER")
    assert (await asyncio.to_thread(post_static, receiver, genuine)).status_code == 200
    payload = await first
    assert payload["process_id"] == "tp-provider"


async def test_a_watcher_fires_on_an_event_whose_dynamic_copy_came_first(receiver: TestClient) -> None:
    """The consumer's dynamic and static callbacks carry the same envelope; the dynamic one often wins."""
    get_store().bind(B, TASK_B)
    watcher = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="CONSUMER")
    first = asyncio.ensure_future(first_trigger_event(watcher))
    await until_subscribed()
    body = envelope("TransferProcessCompleted", B)
    assert (await asyncio.to_thread(post, receiver, body, TASK_B)).json()["status"] == "stored"
    assert (await asyncio.to_thread(post_static, receiver, body)).json()["status"] == "duplicate"
    payload = await first
    assert (payload["envelope_id"], payload["routes"]) == (body["id"], ["dynamic", "static:prov"])


class HeldCommit:
    """Holds back the next commit of an engine until released (a slow api-server worker)."""

    def __init__(self, engine: Any) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.armed = True
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Any) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            self.release.wait(20)


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
async def test_a_watcher_loses_no_event_that_commits_after_a_later_one(receiver: TestClient) -> None:
    """On PostgreSQL a seq is taken at INSERT and seen at COMMIT: seq n+1 can commit before seq n. Two
    api-server workers on one store (each commits one group at a time): the first one's commit is held back
    while the other's commits."""
    with TestClient(receiver.app) as other_worker:  # its own event loop, so its own group committer
        await _watch_out_of_order_commits(receiver, other_worker)


async def _watch_out_of_order_commits(receiver: TestClient, other_worker: TestClient) -> None:
    assert post_static(receiver, envelope("TransferProcessInitiated", "warm-up")).status_code == 200
    name = "out-of-order"
    runs = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], name=name).run()
    first = asyncio.ensure_future(runs.__anext__())
    await until_subscribed()
    held = HeldCommit(get_store(receiver.app.state.edc_settings.store_url).engine)
    slow = asyncio.ensure_future(asyncio.to_thread(post_static, receiver, envelope("TransferProcessCompleted", "tp-1")))
    assert await asyncio.to_thread(held.reached.wait, 10)  # tp-1 inserted (seq n), not committed
    fast = envelope("TransferProcessCompleted", "tp-2")
    assert (await asyncio.to_thread(post_static, other_worker, fast)).status_code == 200  # seq n+1, committed
    assert (await asyncio.wait_for(first, 10)).payload["process_id"] == "tp-2"
    second = asyncio.ensure_future(runs.__anext__())
    held.release.set()
    assert (await slow).status_code == 200
    assert (await asyncio.wait_for(second, 10)).payload["process_id"] == "tp-1"  # not skipped as "seq <= cursor"
    await runs.aclose()

    # and across a restart: the trigger fires tp-4 and stops; tp-3 (the lower seq) commits only then
    runs = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], name=name).run()
    first = asyncio.ensure_future(runs.__anext__())
    await until_subscribed()
    held = HeldCommit(get_store(receiver.app.state.edc_settings.store_url).engine)
    slow = asyncio.ensure_future(asyncio.to_thread(post_static, receiver, envelope("TransferProcessCompleted", "tp-3")))
    try:
        assert await asyncio.to_thread(held.reached.wait, 10)
        assert (
            await asyncio.to_thread(post_static, other_worker, envelope("TransferProcessCompleted", "tp-4"))
        ).status_code == 200
        assert (await asyncio.wait_for(first, 10)).payload["process_id"] == "tp-4"  # its cursor is past tp-3
    finally:
        await runs.aclose()
        held.release.set()
    assert (await slow).status_code == 200
    restarted = EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], name=name).run()
    try:
        assert (await asyncio.wait_for(restarted.__anext__(), 10)).payload["process_id"] == "tp-3"
    finally:
        await restarted.aclose()
