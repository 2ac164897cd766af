"""Property-based fuzzing of the receiver from its own OpenAPI document (schemathesis, hypothesis).

Every operation is called with generated paths, headers and bodies (valid envelopes from the schema and
mutations of them); half of the dynamic calls carry a validly signed token and half of the static ones the
registration's secret, so the store is reached too; a third of the signed dynamic calls name a process
bound to another task instance (the binding rule's 403). For every call: no 5xx, and a call answered other
than 200 "stored"/"duplicate" stored nothing. Afterwards the receiver is healthy.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from airflow_edc_callbacks.receiver import ReceiverSettings, create_app, get_settings
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY

STATIC = {"conn_type": "edc_static_callback", "password": "fuzz-secret", "extra": {"events": ["transfer.process"]}}

BOUND_ELSEWHERE = "tp-bound-to-another-task"
APP_STATE: dict[str, object] = {}
STATUSES: Counter[tuple[str, int]] = Counter()


def _app() -> FastAPI:
    """The app under test; settings are filled in per test run by the ``receiver`` fixture."""
    app = create_app(ReceiverSettings(signing_key=SIGNING_KEY, auth=None, auth_from_config=False, purge_interval=0))
    APP_STATE["app"] = app
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture
def receiver(edc_config: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[EventStore]:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_FUZZ", json.dumps(STATIC))
    app = APP_STATE["app"]
    assert isinstance(app, FastAPI)
    on_this_store = ReceiverSettings(
        store_url=edc_config, signing_key=SIGNING_KEY, auth=None, auth_from_config=False, purge_interval=0
    )
    app.dependency_overrides[get_settings] = lambda: on_this_store.resolve()
    store = EventStore(edc_config)
    store.bind(BOUND_ELSEWHERE, "another-task")
    yield store
    app.dependency_overrides.pop(get_settings, None)
    store.dispose()


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_fail_the_receiver_or_store_rejected_events(
    case: schemathesis.Case, receiver: EventStore
) -> None:
    if case.path == "/callbacks/{token}" and case.path_parameters and hash(repr(case.body)) % 2 == 0:
        case.path_parameters["token"] = make_token(SIGNING_KEY, "fuzz-correlation")
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("payload"), dict) and hash(repr(body)) % 3 == 0:
            body["type"] = "TransferProcessTerminated"
            body["payload"]["transferProcessId"] = BOUND_ELSEWHERE
    if case.path == "/callbacks/static/{name}" and hash(repr(case.body)) % 2 == 0:
        case.path_parameters = {"name": "fuzz"}
        case.headers = {**(case.headers or {}), "X-Edc-Callback-Auth": "fuzz-secret"}
    before = receiver.max_seq()
    response = case.call()
    STATUSES[(case.path, response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code != 200 or response.json().get("status") == "ignored":
        assert receiver.max_seq() == before, f"{response.status_code} {response.text} but an event was stored"


def test_the_receiver_is_healthy_after_fuzzing(receiver: EventStore) -> None:
    from fastapi.testclient import TestClient

    app = APP_STATE["app"]
    assert isinstance(app, FastAPI)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "ok", "store": "ok"}
    # the fuzzing reached the store and the rejections alike on both routes
    seen = {key for key, count in STATUSES.items() if count}
    print(f"fuzzed answers: {dict(STATUSES)}")
    for route in ("/callbacks/{token}", "/callbacks/static/{name}"):
        assert {(route, 200), (route, 422)} <= seen, seen
    assert ("/callbacks/{token}", 403) in seen, seen
