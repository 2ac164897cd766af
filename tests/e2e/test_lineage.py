"""Lineage and asset events end to end: the shared ``airflow standalone`` has the OpenLineage provider (test
extra) with its file transport (tests/e2e/conftest.py), the example DAGs run against the real connectors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_edc_callbacks.models import EndpointDataReference
from airflow_edc_callbacks.tokens import make_token
from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from tests.e2e.conftest import OPENLINEAGE_EVENTS, EdcEnvironment, airflow_store
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

TRANSFER_DAG = "example_edc_asset_transfer"
CONSUMER_DAG = "example_edc_asset_consumer"
PUSH_DAG = "example_edc_push_transfer"
TERMINATED_DAG = "example_edc_terminated_transfer"
TRANSFERS = 3


def lineage_events() -> list[dict[str, Any]]:
    """Every OpenLineage event the shared Airflow emitted so far (one JSON file each)."""
    events = []
    for path in sorted(OPENLINEAGE_EVENTS.parent.glob(f"{OPENLINEAGE_EVENTS.name}-*.json")):
        text = path.read_text(encoding="utf-8").strip()
        if text:
            events.append(json.loads(text))
    return events


def events_of(dag_id: str, task_id: str, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The ``kind`` (START, COMPLETE, FAIL) events of one task of one DAG run."""
    return [
        e
        for e in lineage_events()
        if e.get("eventType") == kind and e["job"]["name"] == f"{dag_id}.{task_id}" and run_id in json.dumps(e)
    ]


def wait_for_event(dag_id: str, task_id: str, run_id: str, kind: str, *, facet: str | None = None) -> dict[str, Any]:
    """The first ``kind`` event of the task (whose ``edcTransfer`` facet has ``facet``, if given)."""

    def found() -> dict[str, Any] | None:
        for event in events_of(dag_id, task_id, run_id, kind):
            if facet is None or event["run"]["facets"].get("edcTransfer", {}).get(facet):
                return event
        return None

    return wait_until(found, 60, f"OpenLineage {kind} of {dag_id}.{task_id} ({run_id})")


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side, [])]


def consumer_runs(af: AirflowStandalone) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = af.api("GET", f"/dags/{CONSUMER_DAG}/dagRuns", params={"limit": 100})["dag_runs"]
    return runs


def test_transfers_report_lineage_and_schedule_the_asset_dag_once_each(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    for dag_id in (TRANSFER_DAG, CONSUMER_DAG, PUSH_DAG, TERMINATED_DAG):
        airflow.wait_for_dag(dag_id)
    dsp = edc_env.connectors.provider_dsp_address
    asset_namespace = "edc://" + dsp.split("://", 1)[1]
    agreement = edc_env.agreements[edc.DEMO_ASSET]
    sink_base_url = f"{edc_env.data_server.url}/sink"
    push_run = airflow.trigger_dag(
        PUSH_DAG, conf={"contract_id": agreement, "counter_party_address": dsp, "sink_base_url": sink_base_url}
    )
    unreachable = "http://localhost:19999/protocol/2025-1"
    terminated_run = airflow.trigger_dag(
        TERMINATED_DAG,
        conf={
            "contract_id": agreement,
            "counter_party_address": unreachable,
            "sink_base_url": sink_base_url,
        },
    )

    # three transfers with an outlet, one after the other: the asset-scheduled DAG runs once for each
    before = len(consumer_runs(airflow))
    transfer_runs = []
    output_dir = edc_env.data_server.sink_dir.parent / "asset-transfers"
    for n in range(TRANSFERS):
        run_id = airflow.trigger_dag(TRANSFER_DAG, conf={"contract_id": agreement, "output_dir": str(output_dir)})
        assert airflow.wait_for_run(TRANSFER_DAG, run_id, 180) == "success"
        transfer_runs.append(run_id)
        wait_until(lambda n=n: len(consumer_runs(airflow)) >= before + n + 1, 60, f"consumer run {n + 1}")
    fetched = {r: airflow.xcom(TRANSFER_DAG, r, "fetch_data") for r in transfer_runs}
    transfer_ids = [fetched[r]["transfer_process_id"] for r in transfer_runs]
    assert len(set(transfer_ids)) == TRANSFERS

    runs = consumer_runs(airflow)[before:]
    assert len(runs) == TRANSFERS
    seen = []
    for run in runs:
        assert airflow.wait_for_run(CONSUMER_DAG, run["dag_run_id"], 120) == "success"
        path = f"/dags/{CONSUMER_DAG}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        (event,) = airflow.api("GET", path)["asset_events"]
        assert event["uri"] == f"{asset_namespace}/{edc.DEMO_ASSET}"
        extra = event["extra"]
        assert extra["asset_id"] == edc.DEMO_ASSET
        assert extra["contract_id"] == agreement
        assert extra["size"] == fetched_size(fetched, extra["transfer_process_id"])
        assert len(extra["sha256"]) == 64
        seen.append(extra["transfer_process_id"])
        assert airflow.xcom(CONSUMER_DAG, run["dag_run_id"], "read_transferred_file") == [
            {"transfer_process_id": extra["transfer_process_id"], "size": extra["size"]}
        ]
    assert sorted(seen) == sorted(transfer_ids)

    # the PULL fetch: START and COMPLETE name the provider's asset and the file written, with the run facet
    first = transfer_runs[0]
    start = wait_for_event(TRANSFER_DAG, "fetch_data", first, "START")
    complete = wait_for_event(TRANSFER_DAG, "fetch_data", first, "COMPLETE")
    for event in (start, complete):
        assert datasets(event, "inputs") == [(asset_namespace, edc.DEMO_ASSET)]
        assert datasets(event, "outputs") == [("file", fetched[first]["file"])]
        facet = event["run"]["facets"]["edcTransfer"]
        assert facet["transferProcessId"] == transfer_ids[0]
        assert facet["contractAgreementId"] == agreement
        assert facet["_producer"].startswith("https://airflow-edc-callbacks.readthedocs.io/")
        assert facet["_schemaURL"].endswith("lineage-facets.json#/$defs/EdcTransferRunFacet")
    assert complete["run"]["facets"]["edcTransfer"]["sha256"] == fetched[first]["sha256"]

    # the PUSH transfer: START names the asset and the sink (no query, no credentials); COMPLETE adds the end
    assert airflow.wait_for_run(PUSH_DAG, push_run, 180) == "success"
    push = airflow.xcom(PUSH_DAG, push_run, "push_transfer")
    start = wait_for_event(PUSH_DAG, "push_transfer", push_run, "START")
    complete = wait_for_event(PUSH_DAG, "push_transfer", push_run, "COMPLETE", facet="terminalEvent")
    sink = edc_env.data_server.url.split("://", 1)[1]
    for event in (start, complete):
        assert datasets(event, "inputs") == [(asset_namespace, edc.DEMO_ASSET)]
        ((namespace, name),) = datasets(event, "outputs")
        assert namespace == f"http://{sink}"
        assert name.startswith("/sink/example_edc_push_transfer/")
        assert event["run"]["facets"]["edcTransfer"]["transferType"] == "HttpData-PUSH"
        assert event["run"]["facets"]["edcTransfer"]["counterPartyId"] == "provider"
    facet = complete["run"]["facets"]["edcTransfer"]
    assert facet["transferProcessId"] == push["transfer_process_id"]
    assert facet["contractAgreementId"] == agreement
    assert facet["terminalEvent"] == "TransferProcessCompleted"
    assert facet["source"] == "callback"

    # a terminated transfer: its FAIL event carries the connector's reason
    assert airflow.wait_for_run(TERMINATED_DAG, terminated_run, 180) == "failed"
    fail = wait_for_event(TERMINATED_DAG, "transfer_from_broken_source", terminated_run, "FAIL", facet="failureReason")
    facet = fail["run"]["facets"]["edcTransfer"]
    assert "19999" in facet["failureReason"]
    assert facet["terminalEvent"] == "TransferProcessTerminated"
    assert facet["state"] == "TERMINATED"

    # no secret in any event: the EDR tokens, the Management API key, the callback tokens' signatures
    text = "\n".join(json.dumps(e) for e in lineage_events())
    store = airflow_store(airflow)
    secrets = {edc.CONSUMER.api_key}
    for transfer_id in transfer_ids:
        started = [e for e in store.events(process_id=transfer_id) if e.event_type == "TransferProcessStarted"]
        edr = EndpointDataReference.from_data_address(transfer_id, started[0].payload["dataAddress"])
        secrets |= set(edr.secrets())
    key = (airflow.home / "edc_callbacks_signing.key").read_text().strip().encode()
    for result in (push, airflow.xcom(TRANSFER_DAG, first, "pull_transfer")):
        secrets.add(make_token(key, result["correlation_id"]).split(".", 1)[1])
    assert all(len(s) >= 8 for s in secrets), "each secret is long enough for a search to mean something"
    assert [s for s in secrets if s in text] == []


def fetched_size(fetched: dict[str, dict[str, Any]], transfer_id: str) -> int:
    return next(int(f["size"]) for f in fetched.values() if f["transfer_process_id"] == transfer_id)
