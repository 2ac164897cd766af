from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope, wait_until

AUTH = ("X-Edc-Callback-Auth", "s3cret")


@pytest.fixture
def client(store_url: str, store: EventStore) -> Iterator[TestClient]:
    # ``store`` first: the app's lifespan purges at once, and two stores must not migrate one new file at once
    settings = ReceiverSettings(store_url=store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def auth_client(store_url: str, store: EventStore) -> Iterator[TestClient]:
    settings = ReceiverSettings(store_url=store_url, signing_key=SIGNING_KEY, auth=AUTH, max_body_bytes=2048)
    with TestClient(create_app(settings)) as c:
        yield c


def url(correlation_id: str = "corr1") -> str:
    return f"/callbacks/{make_token(SIGNING_KEY, correlation_id)}"


def test_valid_callback_is_stored_then_duplicate(client: TestClient, store: EventStore) -> None:
    body = envelope("TransferProcessCompleted", "tp-1")
    first = client.post(url(), json=body)
    assert first.status_code == 200
    assert first.json() == {"status": "stored", "id": body["id"]}
    again = client.post(url(), json=body)
    assert again.json() == {"status": "duplicate", "id": body["id"]}
    stored = store.events(correlation_id="corr1")
    assert [(e.event_type, e.process_id, e.envelope_id) for e in stored] == [
        ("TransferProcessCompleted", "tp-1", body["id"])
    ]


def test_edc_content_type_with_charset_accepted(client: TestClient, store: EventStore) -> None:
    body = envelope()
    response = client.post(url(), content=json.dumps(body), headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert len(store.events()) == 1


BAD_INPUT = [
    pytest.param("/callbacks/corr1.forged-signature", {"json": envelope()}, 404, id="forged-token"),
    pytest.param("/callbacks/corr1", {"json": envelope()}, 404, id="unsigned-token"),
    pytest.param(url(), {"content": "not json", "headers": {"Content-Type": "text/plain"}}, 415, id="text-plain"),
    pytest.param(url(), {"content": "{not json", "headers": {"Content-Type": "application/json"}}, 400, id="bad-json"),
    pytest.param(url(), {"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400, id="bad-utf8"),
    pytest.param(url(), {"json": [envelope()]}, 422, id="array"),
    pytest.param(url(), {"json": {"id": "x", "at": 1}}, 422, id="no-type-payload"),
    pytest.param(url(), {"json": {**envelope(), "at": "yesterday"}}, 422, id="bad-at"),
    pytest.param(url(), {"json": {**envelope(), "payload": {"assetId": "a"}}}, 422, id="no-process-id"),
    pytest.param(url(), {"json": {**envelope(), "at": True}}, 422, id="bool-at"),
    pytest.param(url(), {"json": {**envelope(), "at": 2**64}}, 422, id="huge-at"),
    pytest.param(url(), {"json": {**envelope(), "at": -1}}, 422, id="negative-at"),
    pytest.param(
        url(),
        {
            "content": '{"id": "x", "at": 1, "type": "T", "payload": {"transferProcessId": "\\ud800"}}',
            "headers": {"Content-Type": "application/json"},
        },
        422,
        id="lone-surrogate",
    ),
    pytest.param(
        url(),
        {"content": "[" * 100_000 + "]" * 100_000, "headers": {"Content-Type": "application/json"}},
        422,
        id="deeply-nested",
    ),
    pytest.param(
        url(),
        {
            "content": json.dumps({**envelope(), "pad": "x" * (2 * 1024 * 1024)}),
            "headers": {"Content-Type": "application/json"},
        },
        413,
        id="too-large",
    ),
]


@pytest.mark.parametrize(("path", "kwargs", "status"), BAD_INPUT)
def test_bad_input_rejected_and_nothing_stored(
    client: TestClient, store: EventStore, path: str, kwargs: dict, status: int
) -> None:
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert "detail" in response.json()
    assert store.events() == []


def test_auth_header_required_when_configured(auth_client: TestClient, store: EventStore) -> None:
    body = envelope()
    assert auth_client.post(url(), json=body).status_code == 401
    assert auth_client.post(url(), json=body, headers={AUTH[0]: "wrong"}).status_code == 401
    assert store.events() == []
    assert auth_client.post(url(), json=body, headers={AUTH[0]: AUTH[1]}).status_code == 200
    assert len(store.events()) == 1


def test_configured_body_limit(auth_client: TestClient, store: EventStore) -> None:
    body = envelope(padding="x" * 4096)
    response = auth_client.post(url(), json=body, headers={AUTH[0]: AUTH[1]})
    assert response.status_code == 413
    assert store.events() == []


def test_chunked_body_over_limit_rejected(auth_client: TestClient, store: EventStore) -> None:
    payload = json.dumps(envelope(padding="x" * 4096)).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    response = auth_client.post(url(), content=chunks(), headers={AUTH[0]: AUTH[1], "Content-Type": "application/json"})
    assert response.status_code == 413
    assert store.events() == []


def test_store_down_answers_503_not_2xx(tmp_path, store_url: str) -> None:
    settings = ReceiverSettings(store_url=store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    app = create_app(settings)
    with TestClient(app) as c:
        assert c.get("/health").json() == {"status": "ok", "store": "ok"}
        with settings.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE edc_callback_event")
        response = c.post(url(), json=envelope())
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert c.get("/health").status_code == 503


def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) == {"/callbacks/{token}", "/callbacks/static/{name}", "/health"}
    post = doc["paths"]["/callbacks/{token}"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventEnvelope"
    }
    assert {"401", "404", "413", "415", "422", "503"} <= set(post["responses"])
    assert "EventEnvelope" in doc["components"]["schemas"]
    assert client.get("/docs").status_code == 404


STATIC_SECRET = "static-s3cret"


@pytest.fixture
def static_cb1(monkeypatch: pytest.MonkeyPatch) -> None:
    """A static callback registration `cb1`, kept as an Airflow connection (environment secrets backend)."""
    conn = {
        "conn_type": "edc_static_callback",
        "password": STATIC_SECRET,
        "extra": {"events": ["transfer.process"], "auth_header": "X-Static-Auth"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB1", json.dumps(conn))


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        pytest.param("/callbacks/static/cb2", {"X-Static-Auth": STATIC_SECRET}, 404, id="unknown-name"),
        pytest.param("/callbacks/static/CB_1", {"X-Static-Auth": STATIC_SECRET}, 404, id="invalid-name"),
        pytest.param("/callbacks/static/cb1", {}, 401, id="missing-secret"),
        pytest.param("/callbacks/static/cb1", {"X-Static-Auth": "wrong"}, 401, id="wrong-secret"),
        pytest.param("/callbacks/static/cb1", {"X-Edc-Callback-Auth": STATIC_SECRET}, 401, id="secret-in-other-header"),
    ],
)
def test_static_route_rejects_and_stores_nothing(
    static_cb1: None, client: TestClient, store: EventStore, path: str, headers: dict, status: int
) -> None:
    response = client.post(path, json=envelope(), headers=headers)
    assert response.status_code == status, response.text
    assert store.events() == []


def test_static_route_stores_by_process_id(static_cb1: None, client: TestClient, store: EventStore) -> None:
    body = envelope("TransferProcessStarted", "tp-static", type="PROVIDER")
    response = client.post("/callbacks/static/cb1", json=body, headers={"X-Static-Auth": STATIC_SECRET})
    assert response.json() == {"status": "stored", "id": body["id"]}
    [stored] = store.events(process_id="tp-static")
    assert (stored.routes, stored.correlation_id) == (("static:cb1",), None)


def test_each_stored_callback_is_logged_once_with_its_outcome(
    static_cb1: None, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The line an operator turns on with DEBUG, written after the answer is sent; nothing at INFO."""
    body = envelope("TransferProcessCompleted", "tp-logged")
    with caplog.at_level(logging.DEBUG, logger="airflow_edc_callbacks.receiver.events"):
        assert client.post(url("corr-logged"), json=body).json()["status"] == "stored"
        assert client.post(url("corr-logged"), json=body).json()["status"] == "duplicate"
        static = client.post("/callbacks/static/cb1", json=body, headers={"X-Static-Auth": STATIC_SECRET})
        assert static.json()["status"] == "duplicate"
    assert [r.getMessage() for r in caplog.records if r.name == "airflow_edc_callbacks.receiver.events"] == [
        f"Callback TransferProcessCompleted {body['id']} for tp-logged via dynamic (stored)",
        f"Callback TransferProcessCompleted {body['id']} for tp-logged via dynamic (duplicate)",
        f"Callback TransferProcessCompleted {body['id']} for tp-logged via static:cb1 (duplicate)",
    ]
    assert {r.levelno for r in caplog.records if r.name == "airflow_edc_callbacks.receiver.events"} == {logging.DEBUG}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_edc_callbacks.receiver.events"):
        again = envelope("TransferProcessCompleted", "tp-logged")
        assert client.post(url("corr-logged"), json=again).json()["status"] == "stored"
    assert [r.getMessage() for r in caplog.records if r.name == "airflow_edc_callbacks.receiver.events"] == []


def test_event_by_both_routes_is_stored_once_with_both_routes(
    static_cb1: None, client: TestClient, store: EventStore
) -> None:
    body = envelope("TransferProcessCompleted", "tp-both")
    assert client.post("/callbacks/static/cb1", json=body, headers={"X-Static-Auth": STATIC_SECRET}).status_code == 200
    assert client.post(url("corr-both"), json=body).json()["status"] == "duplicate"
    [stored] = store.events(process_id="tp-both")
    assert stored.routes == ("static:cb1", "dynamic")
    assert stored.correlation_id is None  # a stored event's correlation never changes


def test_static_registration_changes_take_effect(
    store_url: str, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new registration is accepted at the latest after the negative cache time; a secret that does not
    match is looked up again before a 401, so a rotated secret is accepted at once: EDC never re-delivers a
    refused callback."""
    settings = ReceiverSettings(
        store_url=store_url,
        signing_key=SIGNING_KEY,
        auth=None,
        auth_from_config=False,
        static_negative_cache_seconds=0.2,
    )
    headers = {"X-Static-Auth": STATIC_SECRET}
    with TestClient(create_app(settings)) as client:
        assert client.post("/callbacks/static/cb1", json=envelope(), headers=headers).status_code == 404
        conn = {
            "conn_type": "edc_static_callback",
            "password": STATIC_SECRET,
            "extra": {"events": ["transfer.process"], "auth_header": "X-Static-Auth"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB1", json.dumps(conn))
        wait_until(
            lambda: client.post("/callbacks/static/cb1", json=envelope(), headers=headers).status_code == 200,
            10,
            "the new registration to be accepted",
        )
        monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB1", json.dumps({**conn, "password": "rotated"}))
        rotated = client.post("/callbacks/static/cb1", json=envelope(), headers={"X-Static-Auth": "rotated"})
        assert rotated.status_code == 200
    assert len(store.events()) == 2


class CountingLookup:
    """A ``static_lookup`` that counts its calls; ``registration`` is what it finds (``None``: nothing)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.registration: StaticCallbackRegistration | None = None

    def __call__(self, name: str) -> StaticCallbackRegistration | None:
        self.calls.append(name)
        return self.registration if self.registration is not None and name == self.registration.name else None


def _counting_client(store_url: str, lookup: CountingLookup, negative_seconds: float) -> TestClient:
    settings = ReceiverSettings(
        store_url=store_url,
        signing_key=SIGNING_KEY,
        auth=None,
        auth_from_config=False,
        static_lookup=lookup,
        static_negative_cache_seconds=negative_seconds,
    )
    return TestClient(create_app(settings))


def test_unknown_static_name_is_looked_up_once_per_negative_cache_time(store_url: str, store: EventStore) -> None:
    lookup = CountingLookup()
    headers = {"X-Static-Auth": STATIC_SECRET}
    with _counting_client(store_url, lookup, 30) as client:
        started = time.monotonic()
        for _ in range(5):
            assert client.post("/callbacks/static/cbx", json=envelope(), headers=headers).status_code == 404
        assert time.monotonic() - started < 30
    assert lookup.calls == ["cbx"]  # was two lookups per request
    assert store.events() == []


def test_new_static_registration_is_accepted_after_the_negative_cache_time(store_url: str, store: EventStore) -> None:
    lookup = CountingLookup()
    headers = {"X-Static-Auth": STATIC_SECRET}
    with _counting_client(store_url, lookup, 0.3) as client:
        assert client.post("/callbacks/static/cbx", json=envelope(), headers=headers).status_code == 404
        lookup.registration = StaticCallbackRegistration(
            name="cbx", secret=STATIC_SECRET, events=("transfer",), auth_header="X-Static-Auth"
        )
        lookup.calls.clear()
        wait_until(
            lambda: client.post("/callbacks/static/cbx", json=envelope(), headers=headers).status_code == 200,
            10,
            "the new registration to be accepted after the negative cache time",
        )
        assert lookup.calls == ["cbx"]  # asked once, when the cached "unknown" expired

        # found, but the secret does not match: asked again (it may have been rotated) before each 401
        lookup.calls.clear()
        for _ in range(2):
            wrong = client.post("/callbacks/static/cbx", json=envelope(), headers={"X-Static-Auth": "old"})
            assert wrong.status_code == 401
        assert lookup.calls == ["cbx", "cbx"]
        lookup.registration = StaticCallbackRegistration(
            name="cbx", secret="rotated", events=("transfer",), auth_header="X-Static-Auth"
        )
        rotated = client.post("/callbacks/static/cbx", json=envelope(), headers={"X-Static-Auth": "rotated"})
        assert rotated.status_code == 200
    assert len(store.events()) == 2


def test_unknown_names_do_not_grow_the_cache_without_bound() -> None:
    lookup = CountingLookup()
    settings = ReceiverSettings(static_lookup=lookup, static_negative_cache_seconds=60, static_negative_cache_size=3)
    for name in ["a1", "a2", "a3", "a4", "a5"]:
        assert settings.static_registration(name) is None
    assert settings.static_registration("a5") is None
    assert settings.static_registration("a1") is None  # forgotten: asked again
    assert lookup.calls == ["a1", "a2", "a3", "a4", "a5", "a1"]


def test_static_lookup_failure_is_503_and_stores_nothing(store_url: str, store: EventStore) -> None:
    def broken(name: str) -> None:
        raise RuntimeError("secrets backend down")

    settings = ReceiverSettings(
        store_url=store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False, static_lookup=broken
    )
    with TestClient(create_app(settings)) as c:
        response = c.post("/callbacks/static/cb1", json=envelope(), headers={"X-Static-Auth": STATIC_SECRET})
    assert response.status_code == 503
    assert store.events() == []


def test_receiver_purges_old_events_in_the_background(store_url: str, store: EventStore) -> None:
    """Every receiver runs retention itself (purge_interval); nobody has to run the purge command."""
    from datetime import timedelta

    settings = ReceiverSettings(
        store_url=store_url,
        signing_key=SIGNING_KEY,
        auth=None,
        auth_from_config=False,
        retention=timedelta(days=7),
        purge_interval=0.1,
    )
    with TestClient(create_app(settings)) as client:
        old = envelope("TransferProcessCompleted", "tp-old")
        assert client.post(f"/callbacks/{make_token(SIGNING_KEY, 'c-old')}", json=old).status_code == 200
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE edc_callback_event SET received_at = received_at - CAST(8 AS BIGINT) * 86400000"
            )
        new = envelope("TransferProcessCompleted", "tp-new")
        assert client.post(f"/callbacks/{make_token(SIGNING_KEY, 'c-new')}", json=new).status_code == 200
        wait_until(lambda: [e.process_id for e in store.events()] == ["tp-new"], 10, "the background purge")


def test_retention_runs_from_the_app_lifespan_before_any_request(store_url: str, store: EventStore) -> None:
    """The retention loop is the app's lifespan: a receiver that answers nothing purges all the same."""
    from datetime import timedelta

    from airflow_edc_callbacks.models import EventEnvelope

    old = envelope("TransferProcessCompleted", "tp-old")
    store.record(EventEnvelope.model_validate(old), old, correlation_id="c-old", route="dynamic")
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edc_callback_event SET received_at = received_at - CAST(8 AS BIGINT) * 86400000")
    settings = ReceiverSettings(
        store_url=store_url,
        signing_key=SIGNING_KEY,
        auth=None,
        auth_from_config=False,
        retention=timedelta(days=7),
        purge_interval=3600,
    )
    app = create_app(settings)
    TestClient(app).get("/health")  # no lifespan (not entered as a context): no purge
    assert [e.process_id for e in store.events()] == ["tp-old"]
    with TestClient(app):
        wait_until(lambda: store.events() == [], 10, "the purge the lifespan started")


def test_settings_are_a_dependency_tests_can_override(store_url: str, store: EventStore) -> None:
    """``app.dependency_overrides[get_settings]`` replaces the settings of every route."""
    from airflow_edc_callbacks.receiver import get_settings

    app = create_app(ReceiverSettings(store_url="sqlite:////proc/nowhere/events.db", purge_interval=0))
    override = ReceiverSettings(
        store_url=store_url, signing_key=SIGNING_KEY, auth=AUTH, auth_from_config=False, max_body_bytes=2048
    )
    app.dependency_overrides[get_settings] = lambda: override.resolve()
    with TestClient(app) as c:
        assert c.get("/health").json() == {"status": "ok", "store": "ok"}
        body = envelope("TransferProcessCompleted", "tp-override")
        assert c.post(url(), json=body).status_code == 401  # the override's auth header is required
        answer = c.post(url(), json=body, headers={AUTH[0]: AUTH[1]})
        assert answer.json() == {"status": "stored", "id": body["id"]}
        too_big = c.post(url(), content=b" " * 2049, headers={AUTH[0]: AUTH[1], "Content-Type": "application/json"})
        assert too_big.status_code == 413
    assert [e.process_id for e in store.events()] == ["tp-override"]


@pytest.mark.parametrize("field", ["id", "type", "transferProcessId"])
def test_nul_characters_are_refused_with_422_on_every_store(client: TestClient, store: EventStore, field: str) -> None:
    """Found by the fuzz run on PostgreSQL: text columns cannot hold NUL; the receiver says 422, not 503."""
    body = envelope("TransferProcessCompleted", "tp-nul")
    if field == "transferProcessId":
        body["payload"]["transferProcessId"] = "tp\x00nul"
    else:
        body[field] = body[field] + "\x00"
    response = client.post(f"/callbacks/{make_token(SIGNING_KEY, 'c-nul')}", json=body)
    assert response.status_code == 422, response.text
    assert store.events() == []


@pytest.mark.parametrize("path", [url() + "/", url() + "/?x=1", "/callbacks/static/cb1/", "/health/"])
def test_trailing_slash_is_not_redirected(client: TestClient, store: EventStore, path: str) -> None:
    """No 307 with a Location built from the Host header (which also carried the token into it)."""
    method = "GET" if path.startswith("/health") else "POST"
    response = client.request(method, path, json=envelope(), headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code in (404, 405)
    assert "location" not in response.headers
    assert store.events() == []
