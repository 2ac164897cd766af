"""EDRs of PULL transfers: read from the connector's EDR cache or from the stored TransferProcessStarted
callback (real 0.15.1 bodies in tests/fixtures/edc), and the data fetch with them. The whole path runs on
the real connectors in tests/e2e."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.edr import fetch_to_file
from airflow_edc_callbacks.exceptions import EdcDataFetchError, EdcEdrNotFound
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import EndpointDataReference, EventEnvelope
from airflow_edc_callbacks.store import EventStore
from tests.helpers import EDC_FIXTURES, envelope

FIXTURES = EDC_FIXTURES
BASE = "http://consumer.example:29193/management"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def hook_with(monkeypatch: pytest.MonkeyPatch, edc_config: str) -> Any:
    """A hook whose connector answers ``edr`` (status, body) for EDR reads and ``state`` for state reads."""

    def make(
        status: int, body: Any, state: str = "STARTED", api_version: str = "v3"
    ) -> tuple[EdcManagementHook, list[str]]:
        conn = {"conn_type": "edc", "host": BASE, "password": "k", "extra": {"api_version": api_version}}
        monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps(conn))
        paths: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            paths.append(request.url.path)
            if request.url.path.endswith("/state"):
                return httpx.Response(200, json={"@type": "TransferState", "state": state})
            return httpx.Response(status, json=body)

        return EdcManagementHook(transport=httpx.MockTransport(answer), retries=0, ledger=StoreLedger()), paths

    return make


NOT_FOUND = [{"message": "Object not found", "type": "ObjectNotFound"}]


def store_started(edc_config: str, *later: str) -> str:
    """Store the real PULL TransferProcessStarted (and ``later`` events of the same process); its id."""
    started = fixture("pull_TransferProcessStarted.json")
    process_id = started["payload"]["transferProcessId"]
    store = EventStore(edc_config)
    for body in (started, *(envelope(event_type, process_id) for event_type in later)):
        store.record(EventEnvelope.model_validate(body), body, correlation_id=None)
    store.dispose()
    return str(process_id)


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
    process_id = store_started(edc_config)
    hook, paths = hook_with(404, NOT_FOUND)
    edr = hook.get_edr(process_id)
    # the EDR cache first, then one state read: the stored token is used only while the transfer runs
    base = "/management/v3/transferprocesses"
    assert paths == [f"/management/v3/edrs/{process_id}/dataaddress", f"{base}/{process_id}/state"]
    assert edr.source == "callback"
    assert edr.endpoint == "http://localhost:19195/public"


@pytest.mark.parametrize(
    ("later", "state", "why"),
    [
        (("TransferProcessTerminated",), "TERMINATED", r"moved on after it started \(TransferProcessTerminated\)"),
        ((), "DEPROVISIONED", "the transfer is DEPROVISIONED"),
    ],
)
def test_the_stored_edr_of_an_ended_transfer_is_not_handed_out(
    hook_with: Any, edc_config: str, later: tuple[str, ...], state: str, why: str
) -> None:
    process_id = store_started(edc_config, *later)
    hook, _ = hook_with(404, NOT_FOUND, state=state)
    with pytest.raises(EdcEdrNotFound, match=why):
        hook.get_edr(process_id)


def test_no_edr_anywhere_is_an_actionable_error(hook_with: Any) -> None:
    hook, _ = hook_with(404, NOT_FOUND)
    with pytest.raises(EdcEdrNotFound) as info:
        hook.get_edr("tp-404")
    message = str(info.value)
    assert "transfer process tp-404" in message
    assert BASE in message
    assert "/v3/edrs/tp-404/dataaddress answered 404 (ObjectNotFound: Object not found)" in message
    assert "no TransferProcessStarted callback is stored" in message


def test_a_hook_without_a_ledger_asks_the_connector_only(hook_with: Any, edc_config: str) -> None:
    """The stored Started callback is there, but a hook built without ``ledger`` never reads the store: it
    says so, and asks the connector nothing beyond its EDR cache."""
    process_id = store_started(edc_config)
    with_ledger, _ = hook_with(404, NOT_FOUND)
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404, json=NOT_FOUND)

    hook = EdcManagementHook(transport=httpx.MockTransport(answer), retries=0)
    with pytest.raises(EdcEdrNotFound, match=r"the callback store: not given to this hook") as info:
        hook.get_edr(process_id)
    assert "TransferProcessStarted" not in str(info.value)
    assert paths == [f"/management/v3/edrs/{process_id}/dataaddress"]
    assert with_ledger.get_edr(process_id).source == "callback"  # the same store, read through a ledger


def test_v4_asks_the_versions_edr_cache_first(hook_with: Any) -> None:
    hook, paths = hook_with(404, NOT_FOUND, api_version="v4beta")
    with pytest.raises(EdcEdrNotFound):
        hook.get_edr("tp-4", use_callbacks=False)
    assert paths == ["/management/v4beta/edrs/tp-4/dataaddress", "/management/v3/edrs/tp-4/dataaddress"]


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

    edr = EndpointDataReference("tp-1", "http://provider.example/public/?sig=abc", "token-123", "bearer")
    result = fetch_to_file(
        edr, tmp_path / "out" / "data.json", path="/items", params={"q": "1"}, transport=httpx.MockTransport(answer)
    )
    assert str(seen[0].url) == "http://provider.example/public/items?sig=abc&q=1"
    assert result.url == "http://provider.example/public/items"  # reported without the query
    assert seen[0].headers["Authorization"] == "token-123"
    assert (tmp_path / "out" / "data.json").read_bytes() == body
    assert (result.size, result.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert result.content_type == "application/json"
    assert "token-123" not in json.dumps(result.as_dict())
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "data.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out" / "data.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_path_with_a_query_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give query parameters as params"):
        fetch_to_file(EDR, tmp_path / "x", path="items?limit=1")
    assert list(tmp_path.iterdir()) == []


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
