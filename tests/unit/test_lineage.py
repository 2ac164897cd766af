"""Lineage of transfers through the public surface: the operators' and the sensor's OpenLineage methods
(with the OpenLineage provider, and with it missing), the asset URI helpers, the asset events' ``extra`` of
the operators and of the provider-side asset watcher, and the facts a PULL fetch reads from the store."""

from __future__ import annotations

import builtins
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow.sdk import Asset

from airflow_edc_callbacks.exceptions import EdcTransferFailed, EdcTransferTimeout
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.lineage import edc_asset, edc_asset_uri, transfer_extra
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.operators import (
    EdcContractNegotiationOperator,
    EdcNegotiatedTransferOperator,
    EdcPullDataOperator,
    EdcTransferOperator,
)
from airflow_edc_callbacks.sensors import EdcTransferSensor
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger
from demo.data_server import DataServerHandle, source_bytes, start_data_server
from tests.helpers import EDC_FIXTURES, envelope

DSP = "http://provider.example:19194/protocol/2025-1"
NAMESPACE = "edc://provider.example:19194/protocol/2025-1"
SECRET_SINK = "https://user:hunter2@sink.example:8443/in/data?sig=abcdefsecret&x=1#frag"
CONN = json.dumps({"conn_type": "edc", "host": "http://consumer.example:29193/management", "password": "key"})


@pytest.fixture(autouse=True)
def edc_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", CONN)


def transfer_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "status": "success",
        "transfer_process_id": "tp-1",
        "correlation_id": None,
        "state": "COMPLETED",
        "event_type": "TransferProcessCompleted",
        "reason": None,
        "source": "callback",
        "asset_id": "demo-asset",
        "contract_id": "agreement-1",
        "timeline": [
            {"type": "TransferProcessStarted", "at": 1_700_000_000_000, "received_at": 1_700_000_000_010},
            {"type": "TransferProcessCompleted", "at": 1_700_000_001_000, "received_at": 1_700_000_001_010},
        ],
    }
    event.update(overrides)
    return event


def push_operator(**kwargs: Any) -> EdcTransferOperator:
    fields: dict[str, Any] = {
        "task_id": "push",
        "contract_id": "agreement-1",
        "counter_party_address": DSP,
        "counter_party_id": "provider",
        "asset_id": "demo-asset",
        "transfer_type": "HttpData-PUSH",
        "data_destination": {"type": "HttpData", "baseUrl": SECRET_SINK, "authCode": "s3cr3t-auth"},
    }
    return EdcTransferOperator(**(fields | kwargs))


def as_json(lineage: Any) -> dict[str, Any]:
    """An ``OperatorLineage`` as the OpenLineage client serializes it."""
    from openlineage.client.serde import Serde

    return {
        "inputs": [json.loads(Serde.to_json(d)) for d in lineage.inputs],
        "outputs": [json.loads(Serde.to_json(d)) for d in lineage.outputs],
        "run": {k: json.loads(Serde.to_json(v)) for k, v in lineage.run_facets.items()},
    }


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


# -- asset URIs -----------------------------------------------------------------------------------------------


def test_the_asset_uri_names_the_counter_party_and_the_asset_without_secrets() -> None:
    assert edc_asset_uri(DSP, "demo-asset") == f"{NAMESPACE}/demo-asset"
    assert (
        edc_asset_uri("https://u:pw@Provider.Example/dsp/?token=x#f", "a/b c") == "edc://provider.example/dsp/a%2Fb%20c"
    )
    asset = edc_asset(DSP, "demo-asset", group="edc")
    assert isinstance(asset, Asset)
    assert asset.uri == f"{NAMESPACE}/demo-asset"
    assert asset.group == "edc"
    with pytest.raises(ValueError, match="absolute URL"):
        edc_asset_uri("provider:19194", "demo-asset")
    with pytest.raises(ValueError, match="asset_id"):
        edc_asset_uri(DSP, "")


# -- OpenLineage facets ---------------------------------------------------------------------------------------


def test_a_push_transfer_names_its_asset_and_destination_from_the_start() -> None:
    lineage = as_json(push_operator().get_openlineage_facets_on_start())
    assert names(lineage["inputs"]) == [(NAMESPACE, "demo-asset")]
    assert names(lineage["outputs"]) == [("https://sink.example:8443", "/in/data")]
    facet = lineage["run"]["edcTransfer"]
    assert facet["_producer"].startswith("https://airflow-edc-callbacks.readthedocs.io/")
    assert facet["_schemaURL"].endswith("/lineage-facets.json#/$defs/EdcTransferRunFacet")
    assert facet["transferType"] == "HttpData-PUSH"
    assert facet["counterPartyId"] == "provider"
    assert facet["contractAgreementId"] == "agreement-1"
    assert "transferProcessId" not in facet
    text = json.dumps(lineage)
    for secret in ("hunter2", "abcdefsecret", "s3cr3t-auth", "user:"):
        assert secret not in text


def test_a_completed_transfer_reports_its_process_terminal_event_and_source() -> None:
    op = push_operator()
    op.execute_complete({}, transfer_event())
    facet = as_json(op.get_openlineage_facets_on_complete(None))["run"]["edcTransfer"]
    assert facet["transferProcessId"] == "tp-1"
    assert facet["terminalEvent"] == "TransferProcessCompleted"
    assert facet["source"] == "callback"
    assert facet["state"] == "COMPLETED"
    assert "failureReason" not in facet


def test_a_terminated_transfer_reports_the_connectors_reason_without_its_secrets() -> None:
    op = push_operator()
    reason = "HTTP source answered 500 at /callbacks/corr-1.c2lnbmF0dXJlLXNlY3JldA?token=abc123secret"
    timeline = [{"type": "TransferProcessTerminated", "at": 1, "received_at": 2}]
    with pytest.raises(EdcTransferFailed):
        op.execute_complete({}, transfer_event(status="failed", state="TERMINATED", reason=reason, timeline=timeline))
    lineage = as_json(op.get_openlineage_facets_on_failure(None))
    facet = lineage["run"]["edcTransfer"]
    assert facet["failureReason"].startswith("HTTP source answered 500")
    assert facet["terminalEvent"] == "TransferProcessTerminated"
    assert facet["state"] == "TERMINATED"
    assert "c2lnbmF0dXJlLXNlY3JldA" not in json.dumps(lineage)
    assert "abc123secret" not in json.dumps(lineage)


def test_a_timed_out_wait_reports_the_time_out() -> None:
    op = push_operator(terminate_on_timeout=False)
    with pytest.raises(EdcTransferTimeout):
        op.execute_complete({}, transfer_event(status="timeout", state="STARTED", waited_seconds=30.0, timeline=[]))
    facet = as_json(op.get_openlineage_facets_on_failure(None))["run"]["edcTransfer"]
    assert facet["failureReason"] == "timed out after 30 s in state STARTED"


@pytest.mark.parametrize(
    ("destination", "dataset"),
    [
        (
            {"type": "AmazonS3", "bucketName": "lake", "objectName": "in/x.csv", "secretAccessKey": "k"},
            ("s3://lake", "in/x.csv"),
        ),
        (
            {
                "https://w3id.org/edc/v0.0.1/ns/type": "AzureStorage",
                "edc:account": "acct",
                "container": "c",
                "blobName": "b",
            },
            ("wasbs://c@acct.blob.core.windows.net", "b"),
        ),
        ({"type": "Kafka", "topic": "t", "secret": "x"}, ("edc-data-address:Kafka", "/")),
    ],
)
def test_other_destinations_are_named_by_their_non_secret_parts(destination: dict[str, Any], dataset: Any) -> None:
    lineage = as_json(push_operator(data_destination=destination).get_openlineage_facets_on_start())
    assert names(lineage["outputs"]) == [dataset]


def test_a_pull_transfer_has_no_output_and_the_negotiation_names_its_agreement() -> None:
    pull = EdcTransferOperator(
        task_id="pull", contract_id="agreement-1", counter_party_address=DSP, transfer_type="HttpData-PULL"
    )
    lineage = as_json(pull.get_openlineage_facets_on_start())
    assert lineage["outputs"] == []
    assert lineage["inputs"] == []  # no asset id known before the connector's callback

    negotiate = EdcContractNegotiationOperator(
        task_id="negotiate", asset_id="demo-asset", counter_party_address=DSP, counter_party_id="provider"
    )
    negotiate.execute_complete(
        {},
        {
            "status": "success",
            "contract_negotiation_id": "cn-1",
            "contract_agreement_id": "agreement-9",
            "state": "FINALIZED",
            "source": "callback",
            "timeline": [{"type": "ContractNegotiationFinalized", "at": 1, "received_at": 2}],
        },
    )
    lineage = as_json(negotiate.get_openlineage_facets_on_complete(None))
    assert names(lineage["inputs"]) == [(NAMESPACE, "demo-asset")]
    facet = lineage["run"]["edcTransfer"]
    assert (facet["contractNegotiationId"], facet["contractAgreementId"]) == ("cn-1", "agreement-9")
    assert facet["terminalEvent"] == "ContractNegotiationFinalized"


def test_the_one_step_operator_names_the_file_it_fetches_into_and_the_sensor_its_asset(tmp_path: Path) -> None:
    one_step = EdcNegotiatedTransferOperator(
        task_id="one_step",
        asset_id="demo-asset",
        counter_party_address=DSP,
        counter_party_id="provider",
        transfer_type="HttpData-PULL",
        destination=str(tmp_path / "data.json"),
    )
    lineage = as_json(one_step.get_openlineage_facets_on_start())
    assert names(lineage["inputs"]) == [(NAMESPACE, "demo-asset")]
    assert names(lineage["outputs"]) == [("file", str(tmp_path / "data.json"))]

    sensor = EdcTransferSensor(task_id="wait", transfer_process_id="tp-7", counter_party_address=DSP)
    sensor.execute_complete({}, transfer_event(transfer_process_id="tp-7"))
    lineage = as_json(sensor.get_openlineage_facets_on_complete(None))
    assert names(lineage["inputs"]) == [(NAMESPACE, "demo-asset")]
    assert lineage["run"]["edcTransfer"]["transferProcessId"] == "tp-7"


def test_the_facet_schema_ships_in_the_package_and_describes_every_field() -> None:
    from airflow_edc_callbacks.lineage.facets import TransferFacts, schema

    document = json.loads(schema())
    described = set(document["$defs"]["EdcTransferRunFacet"]["allOf"][1]["properties"])
    every = TransferFacts(
        transfer_process_id="t",
        contract_id="c",
        contract_negotiation_id="n",
        transfer_type="x",
        counter_party_id="p",
        asset_id="a",
        state="s",
        terminal_event="e",
        source="callback",
        failure_reason="r",
        size=1,
        sha256="0" * 64,
    )
    assert set(every.run_facet_fields()) == described


def test_without_the_openlineage_provider_nothing_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider missing (its import fails): the methods return ``None``, the task itself is unaffected."""
    real_import = builtins.__import__

    def no_openlineage(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("airflow.providers.openlineage", "openlineage")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.startswith(("airflow.providers.openlineage", "openlineage"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_openlineage)
    op = push_operator()
    assert op.get_openlineage_facets_on_start() is None
    assert op.execute_complete({}, transfer_event())["transfer_process_id"] == "tp-1"
    assert op.get_openlineage_facets_on_complete(None) is None
    assert op.get_openlineage_facets_on_failure(None) is None


# -- asset events ---------------------------------------------------------------------------------------------


class OutletEvents:
    """``context["outlet_events"]``: an accessor per asset, made on first use, keyed by the asset's URI (as
    Airflow keys them by the asset's unique key; an ``Asset`` is not hashable on Airflow 3.1)."""

    def __init__(self) -> None:
        self.by_uri: dict[str, SimpleNamespace] = {}

    def __getitem__(self, asset: Asset) -> SimpleNamespace:
        return self.by_uri.setdefault(asset.uri, SimpleNamespace(extra={}))


def test_a_transfer_with_an_outlet_puts_its_ids_into_the_asset_event() -> None:
    asset = edc_asset(DSP, "demo-asset")
    context: dict[str, Any] = {"outlet_events": OutletEvents()}
    push_operator(outlets=[asset]).execute_complete(context, transfer_event(source="state_check"))  # type: ignore[arg-type]
    assert context["outlet_events"][asset].extra == {
        "transfer_process_id": "tp-1",
        "asset_id": "demo-asset",
        "contract_id": "agreement-1",
        "source": "state_check",
    }
    failed: dict[str, Any] = {"outlet_events": OutletEvents()}
    with pytest.raises(EdcTransferFailed):
        push_operator(outlets=[asset]).execute_complete(failed, transfer_event(status="failed", state="TERMINATED"))  # type: ignore[arg-type]
    assert failed["outlet_events"].by_uri == {}  # a failed task emits no asset event


@pytest.fixture
def data_server(tmp_path: Path) -> Any:
    with start_data_server(0, tmp_path / "sink") as server:
        yield server


def test_a_pull_fetch_adds_size_and_sha256_and_reads_its_ids_from_the_store(
    edc_config: str, tmp_path: Path, data_server: DataServerHandle
) -> None:
    """Both stores: the fetch names its asset and contract from the transfer's stored (trusted) callbacks."""
    started = envelope("TransferProcessStarted", "tp-pull", contractId="agreement-7", transferType="HttpData-PULL")
    store = EventStore(edc_config)
    store.record(EventEnvelope.model_validate(started), started, correlation_id=None, route="static:consumercb")
    forged = envelope("TransferProcessStarted", "tp-pull", assetId="another-asset", contractId="forged")
    store.record(EventEnvelope.model_validate(forged), forged, correlation_id="someone-else")  # not trusted
    store.dispose()
    edr = json.loads((EDC_FIXTURES / "mgmt_edr_dataaddress.json").read_text())
    edr["https://w3id.org/edc/v0.0.1/ns/endpoint"] = f"{data_server.url}/source/demo-asset"
    hook = EdcManagementHook(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=edr)), retries=0)
    asset = edc_asset(DSP, "demo-asset")
    op = EdcPullDataOperator(
        task_id="fetch",
        transfer_process_id="tp-pull",
        destination=str(tmp_path / "out.json"),
        counter_party_address=DSP,
        outlets=[asset],
    )
    op._hook = lambda: hook  # type: ignore[method-assign]
    context: dict[str, Any] = {"outlet_events": OutletEvents()}
    result = op.execute(context)  # type: ignore[arg-type]
    data = source_bytes("demo-asset")
    assert context["outlet_events"][asset].extra == {
        "transfer_process_id": "tp-pull",
        "asset_id": "demo-asset",
        "contract_id": "agreement-7",
        "source": None,
        "file": result["file"],
        "size": len(data),
        "sha256": result["sha256"],
    }
    lineage = as_json(op.get_openlineage_facets_on_complete(None))
    assert names(lineage["inputs"]) == [(NAMESPACE, "demo-asset")]
    assert names(lineage["outputs"]) == [("file", str(tmp_path / "out.json"))]
    facet = lineage["run"]["edcTransfer"]
    assert (facet["size"], facet["sha256"], facet["transferType"]) == (len(data), result["sha256"], "HttpData-PULL")
    assert edr["https://w3id.org/edc/v0.0.1/ns/authorization"] not in json.dumps(lineage)


def test_the_asset_watcher_emits_the_same_extra_keys_as_an_operator(store: EventStore) -> None:
    body = envelope("TransferProcessCompleted", "tp-provider", type="PROVIDER")
    store.record(EventEnvelope.model_validate(body), body, correlation_id=None, route="static:providercb")
    (stored,) = store.events(process_id="tp-provider")
    payload = EdcCallbackEventTrigger.event_payload(stored)
    watched = transfer_extra(SimpleNamespace(extra={"from_trigger": True, "payload": payload}))
    operated = transfer_extra(SimpleNamespace(extra=transfer_event() | {"source": "callback"}))
    for key in ("transfer_process_id", "asset_id", "contract_id", "source"):
        assert key in watched
        assert key in operated
    assert (watched["transfer_process_id"], watched["asset_id"], watched["source"]) == (
        "tp-provider",
        "demo-asset",
        "callback",
    )
    assert payload["process_id"] == "tp-provider"  # the keys it had stay
    negotiation = envelope("ContractNegotiationFinalized", "cn-1", contractNegotiationId="cn-1")
    store.record(EventEnvelope.model_validate(negotiation), negotiation, correlation_id=None, route="static:providercb")
    assert EdcCallbackEventTrigger.event_payload(store.events(process_id="cn-1")[0])["transfer_process_id"] is None
