"""The compatibility subset, per listed EDC version, on real connectors and a real ``airflow standalone``:
a contract negotiation, a PUSH transfer and a PULL transfer whose data is fetched through the EDR (all in
one run of the example full pipeline DAG on the version's connection), the static callbacks with the
settings ``static-config`` rendered for the version, the sensor, and the EDR cache API. Each version's
callback bodies and Management API answers are captured (secrets replaced) for the unit tests."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.connector_versions import profile
from airflow_edc_callbacks.redaction import redact_tokens
from demo import connectors as edc
from demo.data_server import source_bytes
from tests.compat.conftest import REPO, WORK, CompatEnvironment, static_names
from tests.compat.results import NOT_OFFERED
from tests.harness import airflow_store
from tests.helpers import wait_until

PIPELINE_DAG = "example_edc_full_pipeline"
SENSOR_DAG = "example_edc_transfer_sensor"
ATTEMPTS = 3
"""EDC now and then terminates a transfer by itself (a DSP message overtook another, see
demo/edc/provider.properties): the sensor test starts another then, up to this many times."""


def offered(env: CompatEnvironment, feature: str) -> None:
    if feature not in env.row.features:
        pytest.skip(f"{NOT_OFFERED} by EDC {env.version} (demo/edc_versions.py)")


@pytest.fixture(scope="session")
def pipeline(compat_env: CompatEnvironment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the full pipeline DAG on this version's connection: its state, task states and XComs."""
    af = compat_env.airflow
    out = tmp_path_factory.mktemp(f"pipeline-{compat_env.version}")
    af.wait_for_dag(PIPELINE_DAG)
    run_id = af.trigger_dag(
        PIPELINE_DAG,
        conf={
            "edc_conn_id": compat_env.conn_id,
            "counter_party_address": compat_env.connectors.provider_dsp_address,
            "counter_party_id": compat_env.connectors.provider_id,
            "asset_id": edc.DEMO_ASSET,
            "sink_base_url": f"{compat_env.data_server.url}/sink",
            "output_dir": str(out),
        },
    )
    state = af.wait_for_run(PIPELINE_DAG, run_id, 300)
    tasks = {t["task_id"]: t for t in af.task_instances(PIPELINE_DAG, run_id)}
    xcom = {t: af.xcom(PIPELINE_DAG, run_id, t) for t, ti in tasks.items() if ti["state"] == "success"}
    logs = {
        t: af.task_log(PIPELINE_DAG, run_id, t, try_number=max(1, ti["try_number"]))[-3000:]
        for t, ti in tasks.items()
        if ti["state"] != "success"
    }
    return {"run_id": run_id, "state": state, "tasks": tasks, "xcom": xcom, "logs": logs}


def task_result(pipeline: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The XCom of a pipeline task, or a failure showing the task's state and log."""
    if task_id not in pipeline["xcom"]:
        state = pipeline["tasks"].get(task_id, {}).get("state")
        pytest.fail(f"{task_id} ended {state}:\n{pipeline['logs'].get(task_id, '')}")
    result: dict[str, Any] = pipeline["xcom"][task_id]
    return result


@pytest.mark.feature("negotiation")
def test_negotiation(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    offered(compat_env, "negotiation")
    result = task_result(pipeline, "negotiate")
    assert result["state"] == "FINALIZED"
    assert result["source"] == "callback"
    assert result["timeline"][-1]["type"] == "ContractNegotiationFinalized"
    with compat_env.connectors.client("consumer") as client:
        negotiation = client.get(f"/v3/contractnegotiations/{result['contract_negotiation_id']}").json()
    assert negotiation["contractAgreementId"] == result["contract_agreement_id"]
    assert negotiation["protocol"] == profile(compat_env.version).dsp_protocol


@pytest.mark.feature("push")
def test_push_transfer(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    offered(compat_env, "push")
    result = task_result(pipeline, "push_transfer")
    assert result["state"] == "COMPLETED"
    assert result["source"] == "callback"
    assert result["contract_id"] == task_result(pipeline, "negotiate")["contract_agreement_id"]
    run_path = "/full_pipeline/" + pipeline["run_id"].replace(":", "_").replace("+", "_")
    sink = [r for r in compat_env.data_server.received() if run_path in r["path"]]
    assert [Path(r["file"]).read_bytes() for r in sink] == [source_bytes(edc.DEMO_ASSET)]


@pytest.mark.feature("pull")
def test_pull_transfer_data_through_the_edr(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    offered(compat_env, "pull")
    pulled = task_result(pipeline, "pull_transfer")
    assert pulled["state"] == "STARTED"
    assert pulled["source"] == "callback"
    assert pulled["timeline"][-1]["type"] == "TransferProcessStarted"
    fetched = task_result(pipeline, "fetch_data")
    source = source_bytes(edc.DEMO_ASSET)
    assert Path(fetched["file"]).read_bytes() == source
    assert fetched["url"] == f"http://localhost:{edc.PROVIDER.public_port}{edc.PROVIDER.public_path}"
    one_step = task_result(pipeline, "negotiate_and_pull")
    assert Path(one_step["data"]["file"]).read_bytes() == source


@pytest.mark.feature("static_callback")
def test_static_callback(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    offered(compat_env, "static_callback")
    names = static_names(compat_env.version)
    consumer = compat_env.static["consumer"].settings
    keys = profile(compat_env.version)
    assert consumer[f"edc.callback.{names['consumer']}.{keys.static_auth_key}"] == "X-Edc-Callback-Auth"
    assert f"edc.callback.{names['consumer']}.{keys.static_auth_code_id}" in consumer
    # the connectors, started with exactly those settings, delivered the PUSH transfer's events on their
    # static routes too (the receiver checked the secret from their vault)
    transfer_id = task_result(pipeline, "push_transfer")["transfer_process_id"]
    store = airflow_store(compat_env.airflow)
    stored = wait_until(
        lambda: [e for e in store.events(process_id=transfer_id) if f"static:{names['consumer']}" in e.routes],
        30,
        "the consumer's static callbacks",
    )
    assert "TransferProcessCompleted" in [e.event_type for e in stored]


@pytest.mark.feature("sensor")
def test_sensor_waits_for_a_transfer_started_outside_airflow(compat_env: CompatEnvironment) -> None:
    offered(compat_env, "sensor")
    af = compat_env.airflow
    af.wait_for_dag(SENSOR_DAG)
    for _ in range(ATTEMPTS):
        run_id = af.trigger_dag(SENSOR_DAG, conf={"asset_id": edc.DEMO_ASSET, "transfer_process_id": ""})
        af.wait_for_task_state(SENSOR_DAG, run_id, "wait_for_transfer", {"deferred"}, 120)
        # a plain Management API call, no callbackAddresses: only the static callback reports on it
        transfer_id = edc.start_push_transfer(
            compat_env.connectors, compat_env.agreement, f"{compat_env.data_server.url}/sink/sensor"
        )
        final = edc.wait_transfer_state(compat_env.connectors, transfer_id)
        state = af.wait_for_run(SENSOR_DAG, run_id, 180)
        if final == "COMPLETED":
            break
    assert state == "success"
    result = af.xcom(SENSOR_DAG, run_id, "wait_for_transfer")
    assert (result["transfer_process_id"], result["state"], result["source"]) == (transfer_id, "COMPLETED", "callback")
    consumer_route = f"static:{static_names(compat_env.version)['consumer']}"
    assert all(item["routes"] == [consumer_route] for item in result["timeline"])


@pytest.mark.feature("edr_cache_api")
def test_edr_cache_api(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    offered(compat_env, "edr_cache_api")
    assert task_result(pipeline, "fetch_data")["edr_source"] == "connector"  # GET /v3/edrs/{id}/dataaddress


# -- fixtures for the unit tests -------------------------------------------------------------------------

_CALLBACK_TOKEN = re.compile(r"(/callbacks/)[^/\"?]+")


def scrubbed(document: Any) -> Any:
    """``document`` with EDR tokens, auth keys and signatures replaced (``***``) and dynamic callback
    tokens replaced by ``<token>``."""
    text = json.dumps(redact_tokens(document))
    return json.loads(_CALLBACK_TOKEN.sub(r"\1<token>", text))


def _save(directory: Path, name: str, document: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(scrubbed(document), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def test_capture_fixtures(compat_env: CompatEnvironment, pipeline: dict[str, Any]) -> None:
    """Store this version's callbacks and Management API answers: into ``tests/fixtures/edc/<version>/``
    with ``EDC_COMPAT_CAPTURE=1``, else under ``.work/compat/fixtures/<version>/``."""
    base = REPO / "tests" / "fixtures" / "edc" if os.environ.get("EDC_COMPAT_CAPTURE") else WORK / "fixtures"
    target = base / compat_env.version
    processes = {
        "negotiation": task_result(pipeline, "negotiate")["contract_negotiation_id"],
        "push": task_result(pipeline, "push_transfer")["transfer_process_id"],
        "pull": task_result(pipeline, "pull_transfer")["transfer_process_id"],
    }
    store = airflow_store(compat_env.airflow)
    sequence: dict[str, list[dict[str, Any]]] = {}
    for kind, process_id in processes.items():
        events = store.events(process_id=process_id)
        assert events, f"no stored callback of the {kind} process {process_id}"
        sequence[kind] = [{"type": e.event_type, "routes": sorted(e.routes)} for e in events]
        seen: set[str] = set()
        for e in events:
            if e.event_type not in seen:  # one body per event type
                seen.add(e.event_type)
                _save(target / "callbacks", f"{kind}_{e.event_type}.json", e.body)
    _save(target / "callbacks", "sequence.json", sequence)
    with compat_env.connectors.client("consumer") as client:
        answers = {
            "transferprocess_push": client.get(f"/v3/transferprocesses/{processes['push']}"),
            "transferprocess_state": client.get(f"/v3/transferprocesses/{processes['push']}/state"),
            "transferprocess_pull": client.get(f"/v3/transferprocesses/{processes['pull']}"),
            "contractnegotiation": client.get(f"/v3/contractnegotiations/{processes['negotiation']}"),
            "error_not_found": client.get("/v3/transferprocesses/no-such-process"),
        }
        if "edr_cache_api" in compat_env.row.features:
            answers["edr_dataaddress"] = client.get(f"/v3/edrs/{processes['pull']}/dataaddress")
    protocol = f"http://127.0.0.1:{edc.PROVIDER.protocol_port}{edc.PROVIDER.protocol_path}"
    answers["dspace_version"] = httpx.get(f"{protocol}/.well-known/dspace-version", timeout=10)
    for name, response in answers.items():
        if response.status_code == 401:  # e.g. EDC 0.12.0 guards /.well-known/dspace-version: nothing to learn
            continue
        _save(target / "mgmt", f"{name}.json", {"status": response.status_code, "body": response.json()})
    assert answers["transferprocess_push"].json()["state"] == "COMPLETED"
