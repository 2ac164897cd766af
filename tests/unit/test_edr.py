"""EDRs of PULL transfers: read from the connector's EDR cache or from the stored TransferProcessStarted
callback (real 0.15.1 bodies in tests/fixtures/edc), and the data fetch with them. The whole path runs on
the real connectors in tests/e2e."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.edr import fetch_to_file
from airflow_edc_callbacks.exceptions import EdcDataFetchError, EdcEdrNotFound
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import EndpointDataReference, EventEnvelope
from airflow_edc_callbacks.store import EventStore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edc"
BASE = "http://consumer.example:29193/management"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def hook_with(monkeypatch: pytest.MonkeyPatch, edc_config: str) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": BASE, "password": "k"}))

    def make(status: int, body: Any) -> tuple[EdcManagementHook, list[str]]:
        paths: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            paths.append(request.url.path)
            return httpx.Response(status, json=body)

        return EdcManagementHook(transport=httpx.MockTransport(answer), retries=0), paths

    return make


def test_edr_from_the_connector_cache_and_from_the_callback_read_alike() -> None:
    cached = EndpointDataReference.from_data_address("tp-1", fixture("mgmt_edr_dataaddress.json"))
    started = fixture("pull_TransferProcessStarted.json")
    called = EndpointDataReference.from_data_address("tp-1", started["payload"]["dataAddress"], source="callback")
    for edr in (cached, called):
        assert edr.endpoint == "http://localhost:19195/public"
        assert edr.auth_type == "bearer"
        assert edr.endpoint_type == "https://w3id.org/idsa/v4.1/HTTP"
        assert edr.authorization is not None
        assert edr.authorization.startswith("eyJraWQiOiJwdWJsaWMta2V5")
        assert edr.headers() == {"Authorization": edr.authorization}  # the token as is, no scheme
        assert edr.authorization not in repr(edr)
        assert edr.authorization not in str(edr)
    assert (cached.source, called.source) == ("connector", "callback")
    with pytest.raises(ValueError, match="transfer process tp-1 has no endpoint"):
        EndpointDataReference.from_data_address("tp-1", {"type": "HttpData"})


def test_get_edr_asks_the_connector_first(hook_with: Any) -> None:
    hook, paths = hook_with(200, fixture("mgmt_edr_dataaddress.json"))
    edr = hook.get_edr("tp-9")
    assert paths == ["/management/v3/edrs/tp-9/dataaddress"]
    assert (edr.transfer_process_id, edr.source, edr.endpoint) == ("tp-9", "connector", "http://localhost:19195/public")


def test_get_edr_falls_back_to_the_stored_started_callback(hook_with: Any, edc_config: str) -> None:
    started = fixture("pull_TransferProcessStarted.json")
    process_id = started["payload"]["transferProcessId"]
    store = EventStore(edc_config)
    store.record(EventEnvelope.model_validate(started), started, correlation_id=None)
    hook, paths = hook_with(404, [{"message": "Object not found", "type": "ObjectNotFound"}])
    edr = hook.get_edr(process_id)
    assert paths == [f"/management/v3/edrs/{process_id}/dataaddress"]
    assert edr.source == "callback"
    assert edr.endpoint == "http://localhost:19195/public"
    store.dispose()


def test_no_edr_anywhere_is_an_actionable_error(hook_with: Any) -> None:
    hook, _ = hook_with(404, [{"message": "Object not found", "type": "ObjectNotFound"}])
    with pytest.raises(EdcEdrNotFound) as info:
        hook.get_edr("tp-404")
    message = str(info.value)
    assert "transfer process tp-404" in message
    assert BASE in message
    assert "ObjectNotFound: Object not found" in message
    assert "no TransferProcessStarted callback" in message


def test_other_connector_errors_are_not_hidden(hook_with: Any) -> None:
    hook, _ = hook_with(401, [{"message": "Request could not be authenticated", "type": "AuthenticationFailed"}])
    with pytest.raises(Exception, match="answered 401"):
        hook.get_edr("tp-1")


EDR = EndpointDataReference("tp-1", "http://provider.example/public/", "token-123", "bearer")


def test_fetch_streams_the_body_into_the_file(tmp_path: Path) -> None:
    body = b'{"n": 1}' * 50_000
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    result = fetch_to_file(
        EDR, tmp_path / "out" / "data.json", path="/items", params={"q": "1"}, transport=httpx.MockTransport(answer)
    )
    assert str(seen[0].url) == "http://provider.example/public/items?q=1"
    assert seen[0].headers["Authorization"] == "token-123"
    assert (tmp_path / "out" / "data.json").read_bytes() == body
    assert (result.size, result.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert result.content_type == "application/json"
    assert "token-123" not in json.dumps(result.as_dict())
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "data.json"]


@pytest.mark.parametrize(("status", "text"), [(403, "Failed to decode token"), (502, "source failed")])
def test_refused_fetch_names_the_transfer_and_leaves_no_file(tmp_path: Path, status: int, text: str) -> None:
    target = tmp_path / "data.json"
    target.write_bytes(b"previous")
    transport = httpx.MockTransport(lambda _: httpx.Response(status, text=text))
    with pytest.raises(EdcDataFetchError) as info:
        fetch_to_file(EDR, target, transport=transport)
    assert info.value.status_code == status
    assert str(info.value) == (
        f"Data request GET http://provider.example/public/ for transfer process tp-1 answered {status}: {text}"
    )
    assert target.read_bytes() == b"previous"  # the old file stays, no partial file next to it
    assert list(tmp_path.iterdir()) == [target]


def test_unreachable_endpoint(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(EdcDataFetchError, match="could not be reached: ConnectError") as info:
        fetch_to_file(EDR, tmp_path / "x", transport=httpx.MockTransport(refuse))
    assert info.value.status_code is None
    assert list(tmp_path.iterdir()) == []
