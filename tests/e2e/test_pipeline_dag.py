"""The full pipeline DAG (catalog -> negotiation -> PUSH and PULL transfers -> data fetched with the EDR)
on `airflow standalone` against the real connectors, on Management API v3 and v4, and a negotiation the
provider rejects."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from demo.data_server import source_bytes
from tests.e2e.conftest import V4_API_VERSION, V4_CONN_ID, EdcEnvironment, airflow_store

pytestmark = pytest.mark.e2e

DAG_ID = "example_edc_full_pipeline"


def conf(env: EdcEnvironment, output_dir: Path, conn_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "edc_conn_id": conn_id,
        "counter_party_address": env.connectors.provider_dsp_address,
        "counter_party_id": env.connectors.provider_id,
        "asset_id": edc.DEMO_ASSET,
        "sink_base_url": f"{env.data_server.url}/sink",
        "output_dir": str(output_dir),
        **extra,
    }


def run_report(af: AirflowStandalone, run_id: str) -> str:
    """Task states of a run, and the log of each failed task (for assertion messages)."""
    instances = af.task_instances(DAG_ID, run_id)
    lines = [f"{t['task_id']}: {t['state']}" for t in instances]
    for t in instances:
        if t["state"] in ("failed", "up_for_retry"):
            lines.append(af.task_log(DAG_ID, run_id, t["task_id"], try_number=max(1, t["try_number"]))[-3000:])
    return "\n".join(lines)


def not_edr_reads(env: EdcEnvironment, process_id: str) -> list[tuple[float, str, str]]:
    """Requests the consumer's Management API got about a process, besides the one EDR read for the fetch."""
    return [r for r in env.proxy.requests_for(process_id) if "/edrs/" not in r[2]]


@pytest.mark.smoke("pipeline_dag")
@pytest.mark.parametrize(("conn_id", "api_version"), [("edc_default", "v3"), (V4_CONN_ID, V4_API_VERSION)])
def test_full_pipeline_every_step_resumes_on_a_callback(
    edc_env: EdcEnvironment, airflow: AirflowStandalone, tmp_path: Path, conn_id: str, api_version: str
) -> None:
    airflow.wait_for_dag(DAG_ID)
    first_request = len(edc_env.proxy.requests)
    run_id = airflow.trigger_dag(DAG_ID, conf=conf(edc_env, tmp_path, conn_id))
    assert airflow.wait_for_run(DAG_ID, run_id, 240) == "success", run_report(airflow, run_id)

    xcom = {t: airflow.xcom(DAG_ID, run_id, t) for t in ("negotiate", "push_transfer", "pull_transfer")}
    fetched = airflow.xcom(DAG_ID, run_id, "fetch_data")
    one_step = airflow.xcom(DAG_ID, run_id, "negotiate_and_pull")

    # each wait ended on the connector's callback, never on the state-check fallback
    assert xcom["negotiate"]["state"] == "FINALIZED"
    assert xcom["push_transfer"]["state"] == "COMPLETED"
    assert xcom["pull_transfer"]["state"] == "STARTED"
    assert one_step["negotiation"]["state"] == "FINALIZED"
    assert one_step["state"] == "STARTED"
    sources = [r["source"] for r in (*xcom.values(), one_step["negotiation"], one_step)]
    assert sources == ["callback"] * 5
    assert xcom["negotiate"]["timeline"][-1]["type"] == "ContractNegotiationFinalized"
    assert one_step["negotiation"]["timeline"][-1]["type"] == "ContractNegotiationFinalized"
    assert xcom["pull_transfer"]["timeline"][-1]["type"] == "TransferProcessStarted"

    # both transfers ran under the agreement the negotiation produced
    agreement = xcom["negotiate"]["contract_agreement_id"]
    assert xcom["push_transfer"]["contract_id"] == agreement
    assert xcom["pull_transfer"]["contract_id"] == agreement
    assert one_step["contract_id"] == one_step["negotiation"]["contract_agreement_id"] != agreement

    # the PULL data, fetched with the EDR, matches the provider's source byte for byte
    source = source_bytes(edc.DEMO_ASSET)
    for data in (fetched, one_step["data"]):
        assert Path(data["file"]).read_bytes() == source
        assert (data["size"], data["sha256"]) == (len(source), hashlib.sha256(source).hexdigest())
        assert data["url"] == f"http://localhost:{edc.PROVIDER.public_port}{edc.PROVIDER.public_path}"
    assert fetched["edr_source"] == "connector"  # GET /v3/edrs/{id}/dataaddress (edr-cache-api)
    assert f"Fetched {len(source)} bytes" in airflow.task_log(DAG_ID, run_id, "fetch_data")
    # no EDR token in any XCom
    stored_started = [
        e
        for e in airflow_store(airflow).events(process_id=xcom["pull_transfer"]["transfer_process_id"])
        if e.event_type == "TransferProcessStarted"
    ]
    token = stored_started[0].payload["dataAddress"]["properties"][f"{edc.EDC_NS}authorization"]
    assert token not in str([xcom, fetched, one_step])
    assert token not in airflow.task_log(DAG_ID, run_id, "fetch_data")

    # the PUSH data arrived in the sink
    run_path = "/full_pipeline/" + run_id.replace(":", "_").replace("+", "_")
    sink = [r for r in edc_env.data_server.received() if run_path in r["path"]]
    assert [Path(r["file"]).read_bytes() for r in sink] == [source]

    # the connector was never polled: nothing about these processes but their start and the EDR read
    processes = [
        xcom["negotiate"]["contract_negotiation_id"],
        one_step["negotiation"]["contract_negotiation_id"],
        xcom["push_transfer"]["transfer_process_id"],
        xcom["pull_transfer"]["transfer_process_id"],
        one_step["transfer_process_id"],
    ]
    assert {p: not_edr_reads(edc_env, p) for p in processes} == {p: [] for p in processes}

    # and every Management API call went to the connection's API version. EDRs: a v4 connection asks
    # /v4*/edrs first, then /v3/edrs (EDC 0.15.1 with edr-cache-api 0.14.0 has only the v3 one).
    # A negotiation that EDC 0.15.1 terminated by itself is read once for its errorDetail; its task retried.
    paths = {r[2].split("?")[0] for r in edc_env.proxy.requests[first_request:]}
    mgmt = edc.CONSUMER.management_path
    read_once = (f"{mgmt}/v3/edrs/", f"{mgmt}/{api_version}/edrs/", f"{mgmt}/{api_version}/contractnegotiations/")
    assert {p for p in paths if not p.startswith(read_once)} <= {
        f"{mgmt}/{api_version}/catalog/request",
        f"{mgmt}/{api_version}/contractnegotiations",
        f"{mgmt}/{api_version}/transferprocesses",
        f"{mgmt}/{api_version}/transferprocesses/request",  # a retry's look for the earlier try's transfer
    }
    assert f"{mgmt}/{api_version}/contractnegotiations" in paths


def test_rejected_negotiation_fails_the_task_with_the_connectors_reason(
    edc_env: EdcEnvironment, airflow: AirflowStandalone, tmp_path: Path
) -> None:
    airflow.wait_for_dag(DAG_ID)
    never_offered = {"@id": "an-offer-the-provider-never-made", "@type": "Offer"}
    run_id = airflow.trigger_dag(DAG_ID, conf=conf(edc_env, tmp_path, "edc_default", offer=never_offered))
    assert airflow.wait_for_run(DAG_ID, run_id, 180) == "failed"
    states = {t["task_id"]: t["state"] for t in airflow.task_instances(DAG_ID, run_id)}
    assert states["negotiate"] == states["negotiate_and_pull"] == "failed"
    assert states["push_transfer"] == states["pull_transfer"] == "upstream_failed"

    tries = airflow.task_instance(DAG_ID, run_id, "negotiate")["try_number"]
    log = airflow.task_log(DAG_ID, run_id, "negotiate", try_number=tries)
    terminated = [
        e for e in airflow_store(airflow).events() if e.event_type == "ContractNegotiationTerminated" and e.process_id
    ]
    negotiation_id = next(e.process_id for e in terminated if e.process_id in log)
    with edc_env.connectors.client("consumer") as client:
        negotiation = client.get(f"/v3/contractnegotiations/{negotiation_id}").json()
    reason = negotiation["errorDetail"]
    assert "Not found" in reason  # the provider's DSP answer: it made no such offer
    assert (
        f"EDC contract negotiation {negotiation_id} on {edc_env.proxied_management_url} ended TERMINATED: {reason}"
        in log
    )
