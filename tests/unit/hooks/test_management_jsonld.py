"""Every request body EdcManagementHook sends keeps its meaning under EDC 0.18.0's JSON-LD contexts and passes
EDC 0.18.0's v4 request schemas, without a 0.18 runtime (Maven Central here serves EDC only up to 0.15.1).

The bodies come from the hook itself: its body builders (``build_transfer_request``, ``callback_address``,
``build_contract_request``) and, for the calls that build and send in one go, the body it POSTs to an httpx
``MockTransport`` that records it. Each body is expanded offline with PyLD and the context documents of
eclipse-edc/Connector v0.18.0 (tests/fixtures/jsonld, see SOURCES.md), as EDC's Titanium expansion does before
its transformers read the request: a key the context does not define, with no ``@vocab`` in scope, disappears.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pyld.jsonld import JsonLdError

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import MANAGEMENT_V2_CONTEXT
from airflow_edc_callbacks.operators.earlier_try import CORRELATION_PROPERTY
from tests.helpers import EDC_FIXTURES
from tests.jsonld_check import (
    EDC,
    ODRL,
    UnknownDocumentError,
    expand,
    misfits,
    node_types,
    schema_errors,
    term_iris,
    values,
)

BASE = "http://consumer.example:29193/management"
PROVIDER_DSP = "http://provider.example:19194/protocol/2025-1"
AUTH_KEY = "X-Callback-Key"
AUTH_CODE_ID = "airflow-callback-secret"

API_VERSIONS = ["v3", "v4beta", "v4"]
V4_VERSIONS = ["v4beta", "v4"]

RULE_OFFER = {
    "@id": "b2ZmZXI=:ZGVtby1hc3NldA==:MQ==",
    "@type": "Offer",
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": f"{EDC}purpose", "operator": "eq", "rightOperand": "demo"}],
        }
    ],
}
"""An offer with one permission, as a provider with a constrained policy offers it."""


class Recorder:
    """An httpx transport recording each request's method, path and JSON body; it answers what EDC answers."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path.removeprefix("/management")
        self.bodies.append((request.method, path, body))
        if path.endswith("/catalog/request"):
            return httpx.Response(200, json=json.loads((EDC_FIXTURES / "mgmt_v4_catalog_filtered.json").read_text()))
        if path.endswith("/request"):
            return httpx.Response(200, json=[])
        if path.endswith("/terminate"):
            return httpx.Response(204)
        return httpx.Response(200, json={"@type": "IdResponse", "@id": "new-id"})

    def sent(self, method: str, path: str) -> Any:
        """The body of the only ``method path`` request."""
        matching = [body for m, p, body in self.bodies if (m, p) == (method, path)]
        assert len(matching) == 1, f"{method} {path} sent {len(matching)} times: {self.bodies}"
        return matching[0]


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], tuple[EdcManagementHook, Recorder]]:
    def make(api_version: str) -> tuple[EdcManagementHook, Recorder]:
        conn_id = f"edc_jsonld_{api_version}"
        extra = {"api_version": api_version, "callback_auth_key": AUTH_KEY, "callback_auth_code_id": AUTH_CODE_ID}
        conn = {"conn_type": "edc", "host": BASE, "password": "key", "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        recorder = Recorder()
        return EdcManagementHook(conn_id, transport=httpx.MockTransport(recorder), retries=0), recorder

    return make


def push_transfer(hook: EdcManagementHook) -> dict[str, Any]:
    """The transfer request ``EdcTransferOperator`` builds for a PUSH into an HTTP sink."""
    return hook.build_transfer_request(
        counter_party_address=PROVIDER_DSP,
        contract_id="contract-1",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "http://sink.example/upload"},
        asset_id="demo-asset",
        private_properties={"team": "data-eng", CORRELATION_PROPERTY: "corr-1"},
        callback_addresses=[hook.callback_address("http://airflow.example/callbacks/token-1")],
    )


def contract_request(hook: EdcManagementHook, offer: dict[str, Any]) -> dict[str, Any]:
    """The contract request ``start_negotiation`` builds."""
    return hook.build_contract_request(
        counter_party_address=PROVIDER_DSP,
        offer=offer,
        assigner="provider",
        target="demo-asset",
        callback_addresses=[
            hook.callback_address("http://airflow.example/callbacks/token-2", events=["contract.negotiation"])
        ],
    )


def catalog_offer(hook: EdcManagementHook) -> dict[str, Any]:
    """The offer ``find_offer`` takes from a real v4beta catalog answer (EDC 0.15.1, no rules)."""
    catalog = json.loads((EDC_FIXTURES / "mgmt_v4_catalog_filtered.json").read_text())
    return hook.find_offer(catalog, "demo-asset")


def sent_bodies(hook: EdcManagementHook, recorder: Recorder) -> dict[str, Any]:
    """The bodies of every call that builds its own body, by name, as the hook POSTed them."""
    version = hook.settings.api_version
    hook.request_catalog(PROVIDER_DSP, counter_party_id="provider", asset_id="demo-asset")
    hook.query_transfer_processes([{"operandLeft": "contractId", "operator": "=", "operandRight": "contract-1"}])
    catalog = recorder.sent("POST", f"/{version}/catalog/request")
    by_contract = recorder.sent("POST", f"/{version}/transferprocesses/request")
    recorder.bodies.clear()
    hook.find_transfer_processes(CORRELATION_PROPERTY, "corr-1")
    by_correlation = recorder.sent("POST", f"/{version}/transferprocesses/request")
    recorder.bodies.clear()
    assert hook.test_connection()[0]
    probe = recorder.sent("POST", f"/{version}/transferprocesses/request")
    hook.terminate_transfer("tp-1", "no longer needed")
    assert hook.put_secret("airflow-callback-secret", "s3cr3t-value")
    return {
        "catalog": catalog,
        "query_by_contract": by_contract,
        "query_by_correlation": by_correlation,
        "test_connection": probe,
        "terminate": recorder.sent("POST", f"/{version}/transferprocesses/tp-1/terminate"),
        "secret": recorder.sent("POST", "/v3/secrets"),
    }


# -- the checker itself ------------------------------------------------------------------------------------


def test_only_fixture_documents_are_loaded() -> None:
    """Expansion is offline: a context URL that is not a fixture fails instead of being fetched."""
    with pytest.raises(JsonLdError) as raised:
        expand({"@context": "https://w3id.org/edc/connector/management/v0.0.1", "@type": "QuerySpec"})
    cause: BaseException | None = raised.value
    while cause is not None and not isinstance(cause, UnknownDocumentError):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    assert isinstance(cause, UnknownDocumentError)
    assert "management/v0.0.1" in str(cause)


def test_a_bare_auth_key_under_the_v2_context_is_reported(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]],
) -> None:
    """The check has teeth: plain ``authKey``/``authCodeId`` in a v4 callback address (what the v3 body and
    EDC's own OpenAPI example use) are dropped by management-context-v2, which defines only ``uri``,
    ``transactional`` and ``events`` for a CallbackAddress; the connector would then call back without the
    auth header."""
    hook, _ = hooks("v4")
    body = push_transfer(hook)
    callback = body["callbackAddresses"][0]
    callback["authKey"] = callback.pop("edc:authKey")
    callback["authCodeId"] = callback.pop("edc:authCodeId")
    assert misfits(body) == {"callbackAddresses[0].authKey": "dropped", "callbackAddresses[0].authCodeId": "dropped"}
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}authKey") == []


def test_a_data_address_without_its_type_loses_its_properties_under_the_v2_context(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]],
) -> None:
    """The v2 context maps ``type`` and a DataAddress's properties only inside a node typed DataAddress: without
    the ``@type`` the hook adds, EDC would read a destination with no type and no base URL."""
    hook, _ = hooks("v4")
    body = push_transfer(hook)
    del body["dataDestination"]["@type"]
    assert misfits(body) == {"dataDestination.type": "dropped", "dataDestination.baseUrl": "dropped"}


def test_a_key_mapped_to_another_namespace_is_reported(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]],
) -> None:
    """A key that survives expansion under an IRI other than the intended one is reported too: a private
    property named like a compact IRI with an undefined prefix (``airflow:dag``) becomes that IRI, not an EDC
    property, in both versions."""
    for api_version in ("v3", "v4"):
        hook, _ = hooks(api_version)
        body = hook.build_transfer_request(
            counter_party_address=PROVIDER_DSP,
            contract_id="contract-1",
            transfer_type="HttpData-PULL",
            private_properties={"airflow:dag": "d"},
        )
        assert misfits(body) == {
            "privateProperties.airflow:dag": f"expands to airflow:dag, not {EDC}dag",
        }, api_version


# -- transfer requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_transfer_request_keeps_every_field(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str
) -> None:
    hook, _ = hooks(api_version)
    body = push_transfer(hook)
    prefix = "" if api_version == "v3" else "edc:"
    iris = term_iris(body)
    assert misfits(body) == {}, iris
    expected = {
        "protocol": f"{EDC}protocol",
        "counterPartyAddress": f"{EDC}counterPartyAddress",
        "contractId": f"{EDC}contractId",
        "transferType": f"{EDC}transferType",
        "dataDestination": f"{EDC}dataDestination",
        "dataDestination.type": f"{EDC}type",
        "dataDestination.baseUrl": f"{EDC}baseUrl",
        "privateProperties": f"{EDC}privateProperties",
        "privateProperties.team": f"{EDC}team",
        f"privateProperties.{CORRELATION_PROPERTY}": f"{EDC}{CORRELATION_PROPERTY}",
        "callbackAddresses": f"{EDC}callbackAddresses",
        "callbackAddresses[0].uri": f"{EDC}uri",
        "callbackAddresses[0].events": f"{EDC}events",
        "callbackAddresses[0].transactional": f"{EDC}transactional",
        f"callbackAddresses[0].{prefix}authKey": f"{EDC}authKey",
        f"callbackAddresses[0].{prefix}authCodeId": f"{EDC}authCodeId",
    }
    if api_version == "v3":
        expected["assetId"] = f"{EDC}assetId"  # deprecated in v3, absent from the v4 TransferRequest
    assert iris == expected
    types = {"": [f"{EDC}TransferRequest"], "callbackAddresses[0]": [f"{EDC}CallbackAddress"]}
    if api_version != "v3":
        types["dataDestination"] = [f"{EDC}DataAddress"]
    assert node_types(body) == types
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}authKey") == [AUTH_KEY]
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}authCodeId") == [AUTH_CODE_ID]
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}events") == ["transfer.process"]
    assert values(body, f"{EDC}privateProperties", f"{EDC}{CORRELATION_PROPERTY}") == ["corr-1"]
    assert values(body, f"{EDC}dataDestination", f"{EDC}baseUrl") == ["http://sink.example/upload"]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_minimal_pull_transfer_request_keeps_every_field(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str
) -> None:
    hook, _ = hooks(api_version)
    body = hook.build_transfer_request(
        counter_party_address=PROVIDER_DSP, contract_id="contract-1", transfer_type="HttpData-PULL"
    )
    assert misfits(body) == {}
    assert set(term_iris(body).values()) == {
        f"{EDC}protocol",
        f"{EDC}counterPartyAddress",
        f"{EDC}contractId",
        f"{EDC}transferType",
    }
    assert values(body, f"{EDC}protocol") == ["dataspace-protocol-http:2025-1"]


# -- contract requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("offer_source", ["catalog", "rule"])
def test_contract_request_keeps_every_field(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str, offer_source: str
) -> None:
    """Policy terms expand to ODRL (v3: the policy's own ``odrl.jsonld`` context; v4: the DSP 2025-1 ODRL
    profile the v2 context imports for a ContractRequest), everything else to EDC."""
    hook, _ = hooks(api_version)
    offer = catalog_offer(hook) if offer_source == "catalog" else RULE_OFFER
    body = contract_request(hook, offer)
    iris = term_iris(body)
    assert misfits(body, {"policy": ODRL}) == {}, iris
    prefix = "" if api_version == "v3" else "edc:"
    expected = {
        "counterPartyAddress": f"{EDC}counterPartyAddress",
        "protocol": f"{EDC}protocol",
        "policy": f"{EDC}policy",
        "policy.assigner": f"{ODRL}assigner",
        "policy.target": f"{ODRL}target",
        "callbackAddresses": f"{EDC}callbackAddresses",
        "callbackAddresses[0].uri": f"{EDC}uri",
        "callbackAddresses[0].events": f"{EDC}events",
        "callbackAddresses[0].transactional": f"{EDC}transactional",
        f"callbackAddresses[0].{prefix}authKey": f"{EDC}authKey",
        f"callbackAddresses[0].{prefix}authCodeId": f"{EDC}authCodeId",
    }
    if offer_source == "rule":
        expected |= {
            "policy.permission": f"{ODRL}permission",
            "policy.permission[0].action": f"{ODRL}action",
            "policy.permission[0].constraint": f"{ODRL}constraint",
            "policy.permission[0].constraint[0].leftOperand": f"{ODRL}leftOperand",
            "policy.permission[0].constraint[0].operator": f"{ODRL}operator",
            "policy.permission[0].constraint[0].rightOperand": f"{ODRL}rightOperand",
        }
        permission = (f"{EDC}policy", f"{ODRL}permission")
        assert values(body, *permission, f"{ODRL}action") == [f"{ODRL}use"]
        assert values(body, *permission, f"{ODRL}constraint", f"{ODRL}operator") == [f"{ODRL}eq"]
        assert values(body, *permission, f"{ODRL}constraint", f"{ODRL}leftOperand") == [f"{EDC}purpose"]
    assert iris == expected
    assert node_types(body) == {
        "": [f"{EDC}ContractRequest"],
        "policy": [f"{ODRL}Offer"],
        "callbackAddresses[0]": [f"{EDC}CallbackAddress"],
    }
    # what EDC's ContractRequestValidator needs: the offer's @id, assigner and target as node references
    policy = expand(body)[0][f"{EDC}policy"][0]
    assert policy["@id"] == offer["@id"]
    assert values(body, f"{EDC}policy", f"{ODRL}assigner") == ["provider"]
    assert values(body, f"{EDC}policy", f"{ODRL}target") == ["demo-asset"]
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}events") == ["contract.negotiation"]
    assert values(body, f"{EDC}callbackAddresses", f"{EDC}authKey") == [AUTH_KEY]


# -- bodies built and sent in one call: catalog, query specs, terminate, secret ------------------


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_sent_bodies_keep_every_field(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str
) -> None:
    hook, recorder = hooks(api_version)
    bodies = sent_bodies(hook, recorder)
    for name, body in bodies.items():
        assert misfits(body) == {}, (name, term_iris(body))
    criterion = {
        "filterExpression": f"{EDC}filterExpression",
        "filterExpression[0].operandLeft": f"{EDC}operandLeft",
        "filterExpression[0].operator": f"{EDC}operator",
        "filterExpression[0].operandRight": f"{EDC}operandRight",
    }
    assert term_iris(bodies["catalog"]) == {
        "counterPartyAddress": f"{EDC}counterPartyAddress",
        "protocol": f"{EDC}protocol",
        "counterPartyId": f"{EDC}counterPartyId",
        "querySpec": f"{EDC}querySpec",
        **{f"querySpec.{key}": iri for key, iri in criterion.items()},
    }
    for name in ("query_by_contract", "query_by_correlation"):
        assert term_iris(bodies[name]) == {"limit": f"{EDC}limit", **criterion}, name
    assert term_iris(bodies["test_connection"]) == {"limit": f"{EDC}limit"}
    assert term_iris(bodies["terminate"]) == {"reason": f"{EDC}reason"}
    assert term_iris(bodies["secret"]) == {"value": f"{EDC}value"}

    assert values(bodies["catalog"], f"{EDC}counterPartyId") == ["provider"]
    asset_filter = (f"{EDC}querySpec", f"{EDC}filterExpression")
    assert values(bodies["catalog"], *asset_filter, f"{EDC}operandLeft") == [f"{EDC}id"]
    assert values(bodies["catalog"], *asset_filter, f"{EDC}operandRight") == ["demo-asset"]
    assert values(bodies["query_by_correlation"], f"{EDC}filterExpression", f"{EDC}operandLeft") == [
        f"privateProperties.'{EDC}{CORRELATION_PROPERTY}'"
    ]
    assert values(bodies["query_by_contract"], f"{EDC}filterExpression", f"{EDC}operandRight") == ["contract-1"]
    assert expand(bodies["secret"])[0]["@id"] == "airflow-callback-secret"

    # the management-context-v2 maps the term CatalogRequest to edc:DatasetRequest; EDC 0.18's v4 controller
    # checks the compacted @type ("CatalogRequest") and transforms by class, so the request still works
    catalog_type = f"{EDC}CatalogRequest" if api_version == "v3" else f"{EDC}DatasetRequest"
    assert node_types(bodies["catalog"]) == {
        "": [catalog_type],
        "querySpec": [f"{EDC}QuerySpec"],
        "querySpec.filterExpression[0]": [f"{EDC}Criterion"],
    }
    for name in ("query_by_contract", "query_by_correlation"):
        assert node_types(bodies[name]) == {"": [f"{EDC}QuerySpec"], "filterExpression[0]": [f"{EDC}Criterion"]}
    assert node_types(bodies["terminate"]) == {"": [f"{EDC}TerminateTransfer"]}
    assert node_types(bodies["secret"]) == {"": [f"{EDC}Secret"]}


# -- EDC 0.18.0's v4 request schemas (management-api-schema-validator) ----------------------------------------


@pytest.mark.parametrize("api_version", V4_VERSIONS)
def test_v4_bodies_pass_the_0_18_request_schemas(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]], api_version: str
) -> None:
    """The compacted v4 bodies against the JSON schemas EDC 0.18.0 validates v4 requests with (when the
    ``management-api-schema-validator`` extension is in the runtime): ``@context`` holds management/v2,
    ``@type`` is the expected term, mandatory fields are there, callback addresses and criteria are typed."""
    hook, recorder = hooks(api_version)
    bodies = sent_bodies(hook, recorder)
    checks = [
        (push_transfer(hook), "transfer-request-schema.json"),
        (
            hook.build_transfer_request(
                counter_party_address=PROVIDER_DSP, contract_id="c", transfer_type="HttpData-PULL"
            ),
            "transfer-request-schema.json",
        ),
        (contract_request(hook, RULE_OFFER), "contract-request-schema.json"),
        (bodies["catalog"], "catalog-request-schema.json"),
        (bodies["query_by_contract"], "query-spec-schema.json"),
        (bodies["query_by_correlation"], "query-spec-schema.json"),
        (bodies["test_connection"], "query-spec-schema.json"),
        (bodies["terminate"], "transfer-terminate-schema.json"),
    ]
    for body, schema in checks:
        assert body["@context"] == [MANAGEMENT_V2_CONTEXT]
        assert schema_errors(body, schema) == [], (schema, body)


def test_the_schemas_reject_what_edc_rejects(hooks: Callable[[str], tuple[EdcManagementHook, Recorder]]) -> None:
    """The schema check has teeth: a v3-style context, a catalog request without ``counterPartyId`` (mandatory
    since EDC 0.16) and a callback address without ``@type`` are reported."""
    hook, recorder = hooks("v4")
    transfer = push_transfer(hook)
    transfer["@context"] = {"@vocab": EDC}
    assert any("@context" in error for error in schema_errors(transfer, "transfer-request-schema.json"))
    hook.request_catalog(PROVIDER_DSP, asset_id="demo-asset")
    catalog = recorder.sent("POST", "/v4/catalog/request")
    assert schema_errors(catalog, "catalog-request-schema.json") == ["$: 'counterPartyId' is a required property"]
    untyped = push_transfer(hook)
    del untyped["callbackAddresses"][0]["@type"]
    assert schema_errors(untyped, "transfer-request-schema.json") == [
        "$.callbackAddresses[0]: '@type' is a required property"
    ]


def test_an_offer_without_rules_fails_the_0_18_contract_schema(
    hooks: Callable[[str], tuple[EdcManagementHook, Recorder]],
) -> None:
    """EDC 0.18.0's contract-offer schema takes the DSP 2025-1 ``MessageOffer``, which needs a ``permission`` or
    a ``prohibition`` (at least one rule): the offer of an allow-all policy, which EDC's catalog renders with no
    rules (the 0.15.1 demo provider's offer), is refused by a 0.18 runtime that validates v4 schemas. The hook
    sends the offer as the catalog gave it; it cannot add rules the provider did not offer."""
    hook, _ = hooks("v4")
    body = contract_request(hook, catalog_offer(hook))
    assert set(body["policy"]) == {"@id", "@type", "assigner", "target"}
    errors = schema_errors(body, "contract-request-schema.json")
    assert errors == [f"$.policy: {body['policy']!r} is not valid under any of the given schemas"]
