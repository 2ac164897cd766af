"""The main job end to end: example DAGs on `airflow standalone` against two real EDC connectors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.tokens import make_token
from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from demo.data_server import source_bytes
from tests.e2e.conftest import RECEIVER_BASE, EdcEnvironment, airflow_store
from tests.helpers import envelope

pytestmark = pytest.mark.e2e

PUSH_DAG = "example_edc_push_transfer"
TERMINATED_DAG = "example_edc_terminated_transfer"


def conf(env: EdcEnvironment, asset: str) -> dict[str, Any]:
    return {
        "contract_id": env.agreements[asset],
        "counter_party_address": env.connectors.provider_dsp_address,
        "sink_base_url": f"{env.data_server.url}/sink",
    }


def observe_deferral(af: AirflowStandalone, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> list[str]:
    """Poll the task's state every 50 ms until it is final; return the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = af.task_instance(dag_id, run_id, task_id).get("state") or "none"
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in {"success", "failed", "upstream_failed", "skipped"}:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"{dag_id}/{run_id}/{task_id} still {seen[-1] if seen else None}; states seen {seen}")


@pytest.mark.smoke("push_dag")
def test_push_transfer_dag_resumes_on_callback(edc_env: EdcEnvironment, airflow: AirflowStandalone) -> None:
    airflow.wait_for_dag(PUSH_DAG)
    posts_before = len(edc_env.proxy.requests)
    run_id = airflow.trigger_dag(PUSH_DAG, conf=conf(edc_env, edc.DEMO_ASSET))
    states = observe_deferral(airflow, PUSH_DAG, run_id, "push_transfer")
    assert "deferred" in states, states
    assert states[-1] == "success", states
    assert airflow.wait_for_run(PUSH_DAG, run_id, 120) == "success"

    result = airflow.xcom(PUSH_DAG, run_id, "push_transfer")
    transfer_id = result["transfer_process_id"]
    assert result["state"] == "COMPLETED"
    assert result["source"] == "callback"
    assert result["asset_id"] == edc.DEMO_ASSET
    assert result["contract_id"] == edc_env.agreements[edc.DEMO_ASSET]
    assert "authorization" not in str(result).lower()

    # the receiver stored the connector's real callbacks for this transfer
    stored = airflow_store(airflow).events(process_id=transfer_id)
    types = [e.event_type for e in stored]
    assert "TransferProcessStarted" in types
    assert types[-1] == "TransferProcessCompleted"
    # each event came by the dynamic callback, and by the consumer's static callback too: stored once
    assert all("dynamic" in e.routes for e in stored)
    assert any("static:consumercb" in e.routes for e in stored)
    # the trigger resumed on the first Completed (EDC 0.15 sends Completed twice, with two envelope ids)
    assert [t["type"] for t in result["timeline"]] == types[: types.index("TransferProcessCompleted") + 1]

    # the hook bound the transfer to the task instance when the connector answered; every event the task
    # counted is trusted (the early ones too), and a valid token of another task is refused on the
    # api-server's receiver (403), storing nothing
    assert airflow_store(airflow).binding(transfer_id) == result["correlation_id"]
    assert all(e.trusted(result["correlation_id"]) for e in stored)
    key = (airflow.home / "edc_callbacks_signing.key").read_text().strip().encode()
    forged = envelope("TransferProcessTerminated", transfer_id, reason="forged")
    answer = httpx.post(f"{RECEIVER_BASE}/callbacks/{make_token(key, 'another-task')}", json=forged, timeout=10)
    assert answer.status_code == 403, answer.text
    assert forged["id"] not in {e.envelope_id for e in airflow_store(airflow).events(process_id=transfer_id)}

    # the connector agrees, and the data arrived byte for byte
    assert edc_env.consumer_state(transfer_id) == "COMPLETED"
    report = airflow.xcom(PUSH_DAG, run_id, "report")
    sink_path = report["sink_url"].split("/sink/", 1)[1]
    arrived = [r for r in edc_env.data_server.received() if sink_path in r["path"]]
    assert len(arrived) == 1, edc_env.data_server.received()
    assert Path(arrived[0]["file"]).read_bytes() == source_bytes(edc.DEMO_ASSET)

    # the connector was never asked about this transfer: one POST started it (one per try: EDC 0.15.1
    # now and then terminates a transfer by itself, see tests/e2e/conftest.py ATTEMPTS), nothing else
    assert edc_env.proxy.requests_for(transfer_id) == []
    tries = airflow.task_instance(PUSH_DAG, run_id, "push_transfer")["try_number"]
    start_path = f"{edc.CONSUMER.management_path}/v3/transferprocesses"
    starts = [r for r in edc_env.proxy.requests[posts_before:] if r[1:] == ("POST", start_path)]
    assert len(starts) == tries

    log = airflow.task_log(PUSH_DAG, run_id, "push_transfer", try_number=tries)
    assert f"Callback TransferProcessCompleted for transfer process {transfer_id}" in log


def test_terminated_transfer_dag_fails_with_connector_reason(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    airflow.wait_for_dag(TERMINATED_DAG)
    unreachable = conf(edc_env, edc.DEMO_ASSET) | {"counter_party_address": "http://localhost:19999/protocol/2025-1"}
    run_id = airflow.trigger_dag(TERMINATED_DAG, conf=unreachable)
    task_id = "transfer_from_broken_source"
    states = observe_deferral(airflow, TERMINATED_DAG, run_id, task_id)
    assert "deferred" in states, states
    assert states[-1] == "failed", states
    assert airflow.wait_for_run(TERMINATED_DAG, run_id, 120) == "failed"

    terminated = [e for e in airflow_store(airflow).events() if e.event_type == "TransferProcessTerminated"]
    transfer_ids = {e.process_id for e in terminated}
    log = airflow.task_log(TERMINATED_DAG, run_id, task_id, try_number=1)
    transfer_id = next(t for t in transfer_ids if t and t in log)
    reason = next(e.payload.get("reason") for e in terminated if e.process_id == transfer_id)
    assert "19999" in reason  # the consumer connector's own words: it could not reach the counter-party
    assert edc_env.consumer_state(transfer_id) == "TERMINATED"
    assert f"EDC transfer process {transfer_id} on {edc_env.proxied_management_url} ended TERMINATED: {reason}" in log
    assert edc_env.proxy.requests_for(transfer_id) == []
