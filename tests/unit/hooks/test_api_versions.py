"""EdcManagementHook on Management API v3 and v4: paths, contexts and bodies per the connection's
``api_version``, and the v4 answers as a 0.15.1 connector gave them (tests/fixtures/edc). The same calls run
against the real connectors in tests/e2e."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import EDC_NAMESPACE, MANAGEMENT_V2_CONTEXT
from tests.helpers import EDC_FIXTURES

FIXTURES = EDC_FIXTURES
BASE = "http://consumer.example:29193/management"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: Any) -> None:
    conn = {"conn_type": "edc", "host": BASE, "password": "key", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


class Recorder:
    """An httpx transport that records each request and answers from ``answer(request)``."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path.removeprefix("/management"), body))
        return self._answer(request)


def id_response(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"@type": "IdResponse", "@id": "new-id", "@context": [MANAGEMENT_V2_CONTEXT]})


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], tuple[EdcManagementHook, Recorder]]]:
    def make(api_version: str) -> tuple[EdcManagementHook, Recorder]:
        conn_id = f"edc_{api_version}"
        connection(monkeypatch, conn_id, api_version=api_version)
        recorder = Recorder(id_response)
        return EdcManagementHook(conn_id, transport=httpx.MockTransport(recorder)), recorder

    return make


def test_api_version_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, "edc_v5", api_version="v5")
    with pytest.raises(ValueError, match=r"api_version 'v5' is not supported \(use one of v3, v4beta, v4\)"):
        EdcManagementHook("edc_v5").settings  # noqa: B018
    connection(monkeypatch, "edc_upper", api_version="V4")
    assert EdcManagementHook("edc_upper").settings.api_version == "v4"


@pytest.mark.parametrize(
    ("api_version", "context"),
    [("v3", {"@vocab": EDC_NAMESPACE}), ("v4beta", [MANAGEMENT_V2_CONTEXT]), ("v4", [MANAGEMENT_V2_CONTEXT])],
)
def test_transfer_calls_use_the_versions_path_and_context(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str, context: Any
) -> None:
    hook, recorder = hooks(api_version)
    request = hook.build_transfer_request(
        counter_party_address="http://provider/protocol/2025-1",
        contract_id="agreement-1",
        transfer_type="HttpData-PULL",
        callback_addresses=[hook.callback_address("http://airflow/cb/x")],
    )
    assert hook.start_transfer(request) == "new-id"
    hook.terminate_transfer("tp-1", "done")
    method, path, body = recorder.requests[0]
    assert (method, path) == ("POST", f"/{api_version}/transferprocesses")
    assert body["@context"] == context
    assert body["@type"] == "TransferRequest"
    assert body["callbackAddresses"] == [
        {
            "@type": "CallbackAddress",
            "uri": "http://airflow/cb/x",
            "events": ["transfer.process"],
            "transactional": False,
        }
    ]
    assert "dataDestination" not in body
    push = hook.build_transfer_request(
        counter_party_address="http://provider/protocol/2025-1",
        contract_id="agreement-1",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "http://sink"},
    )
    # in v4 a DataAddress needs its @type: the management/v2 context defines "type" only inside one
    typed = {"@type": "DataAddress"} if api_version != "v3" else {}
    assert push["dataDestination"] == {"type": "HttpData", "baseUrl": "http://sink", **typed}
    assert recorder.requests[1][:2] == ("POST", f"/{api_version}/transferprocesses/tp-1/terminate")
    assert recorder.requests[1][2] == {"@context": context, "@type": "TerminateTransfer", "reason": "done"}


def test_contract_request_policy_context_per_version(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]],
) -> None:
    offer = {"@id": "offer-1", "@type": "Offer", "@context": "dropped"}
    bodies = {}
    for version in ("v3", "v4"):
        hook, recorder = hooks(version)
        hook.start_negotiation(
            hook.build_contract_request(
                counter_party_address="http://provider/protocol/2025-1", offer=offer, assigner="provider", target="a"
            )
        )
        assert recorder.requests[0][:2] == ("POST", f"/{version}/contractnegotiations")
        bodies[version] = recorder.requests[0][2]
    # v3 needs the ODRL context on the policy so assigner/target expand to ODRL terms; v4's context has them
    assert bodies["v3"]["policy"] == {
        "@id": "offer-1",
        "@type": "Offer",
        "@context": "http://www.w3.org/ns/odrl.jsonld",
        "assigner": "provider",
        "target": "a",
    }
    assert bodies["v4"]["policy"] == {"@id": "offer-1", "@type": "Offer", "assigner": "provider", "target": "a"}
    assert bodies["v4"]["@context"] == [MANAGEMENT_V2_CONTEXT]


def test_catalog_request_and_offer_on_v4(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, "edc_v4beta", api_version="v4beta")
    catalog = fixture("mgmt_v4_catalog_filtered.json")
    recorder = Recorder(lambda _: httpx.Response(200, json=catalog))
    hook = EdcManagementHook("edc_v4beta", transport=httpx.MockTransport(recorder))
    answer = hook.request_catalog("http://provider/protocol/2025-1", counter_party_id="provider", asset_id="demo-asset")
    method, path, body = recorder.requests[0]
    assert (method, path) == ("POST", "/v4beta/catalog/request")
    assert body["querySpec"] == {
        "@type": "QuerySpec",
        "filterExpression": [
            {"@type": "Criterion", "operandLeft": f"{EDC_NAMESPACE}id", "operator": "=", "operandRight": "demo-asset"}
        ],
    }
    assert hook.find_offer(answer, "demo-asset") == catalog["dataset"][0]["hasPolicy"][0]


def test_v4_answers_read_like_v3(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, "edc_v4beta", api_version="v4beta")
    answers = {
        "/v4beta/contractnegotiations/n-1": fixture("mgmt_v4_contractnegotiation_finalized.json"),
        "/v4beta/transferprocesses/tp-1": fixture("mgmt_v4_transferprocess_started.json"),
    }
    recorder = Recorder(lambda r: httpx.Response(200, json=answers[r.url.path.removeprefix("/management")]))
    hook = EdcManagementHook("edc_v4beta", transport=httpx.MockTransport(recorder))
    negotiation = hook.get_negotiation("n-1")
    assert negotiation["state"] == "FINALIZED"
    assert negotiation["assetId"] == "demo-asset"  # "edc:assetId" in the v4beta answer
    assert negotiation["contractAgreementId"] == answers["/v4beta/contractnegotiations/n-1"]["contractAgreementId"]
    process = hook.get_transfer_process("tp-1")
    assert (process["state"], process["transferType"]) == ("STARTED", "HttpData-PULL")


@pytest.mark.parametrize(("api_version", "prefix"), [("v3", ""), ("v4beta", "edc:"), ("v4", "edc:")])
def test_callback_auth_survives_the_versions_context(
    monkeypatch: pytest.MonkeyPatch, api_version: str, prefix: str
) -> None:
    """The v4 context defines only uri/transactional/events for a CallbackAddress: plain authKey/authCodeId
    would be dropped by EDC's JSON-LD expansion (seen on a 0.15.1 connector: no auth header then), the
    edc: prefixed terms reach the dispatcher."""
    conn_id = f"edc_auth_{api_version}"
    connection(monkeypatch, conn_id, api_version=api_version, callback_auth_key="X-Cb", callback_auth_code_id="alias")
    hook = EdcManagementHook(conn_id)
    assert hook.callback_address("http://cb") == {
        "@type": "CallbackAddress",
        "uri": "http://cb",
        "events": ["transfer.process"],
        "transactional": False,
        f"{prefix}authKey": "X-Cb",
        f"{prefix}authCodeId": "alias",
    }
    request = hook.build_transfer_request(
        counter_party_address="http://p", contract_id="c", transfer_type="HttpData-PULL", asset_id="a"
    )
    assert ("assetId" in request) is (api_version == "v3")  # the v4 TransferRequest has no assetId
