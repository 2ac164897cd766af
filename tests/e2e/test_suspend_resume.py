"""Suspend and resume on the real EDC 0.15.1 connectors while an Airflow task waits for the transfer.

What EDC 0.15.1 does (core ``TransferProcessManagerImpl`` / ``TransferProcessProtocolServiceImpl``):
``POST /v3/transferprocesses/{id}/suspend`` (a ``SuspendTransfer`` with a ``reason``) takes a ``STARTED``
consumer process through ``SUSPENDING`` to ``SUSPENDED`` and sends ``TransferProcessSuspended``;
``POST /v3/transferprocesses/{id}/resume`` takes it through ``RESUMING`` to ``RESUMED``, the provider starts
the data flow again and its ``TransferStartMessage`` makes the consumer ``STARTED`` again, with a second
``TransferProcessStarted`` (a new EDR for PULL). EDC 0.15.1 has no ``TransferProcessResumed`` event (it
came with EDC 0.18): the resumption shows in the timeline as that second ``TransferProcessStarted``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from tests.e2e.conftest import ATTEMPTS, EdcEnvironment, airflow_store
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

SENSOR_DAG = "example_edc_transfer_sensor"
SENSOR_TASK = "wait_for_transfer"
SUSPEND_REASON = "maintenance window of the provider"


def _consumer(env: EdcEnvironment, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    with env.connectors.client("consumer") as client:
        return client.request(method, path, json=body)


def start_pull_transfer(env: EdcEnvironment) -> str:
    """A plain Management API call, no ``callbackAddresses``: only the consumer's static callback reports."""
    body = {
        "@context": {"@vocab": edc.EDC_NS},
        "@type": "TransferRequest",
        "protocol": env.connectors.dsp_protocol,
        "counterPartyAddress": env.connectors.provider_dsp_address,
        "contractId": env.agreements[edc.DEMO_ASSET],
        "transferType": "HttpData-PULL",
    }
    answer = _consumer(env, "POST", "/v3/transferprocesses", body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["@id"])


def stored_types(airflow: AirflowStandalone, transfer_id: str) -> list[str]:
    return [e.event_type for e in airflow_store(airflow).events(process_id=transfer_id)]


def suspended_pull_transfer(env: EdcEnvironment, airflow: AirflowStandalone) -> str:
    """A PULL transfer that started and is now ``SUSPENDED``, its Suspended callback stored."""
    for _ in range(ATTEMPTS):  # see ATTEMPTS: EDC 0.15.1 now and then terminates a transfer by itself
        transfer_id = start_pull_transfer(env)
        if edc.wait_transfer_state(env.connectors, transfer_id, ("STARTED", "TERMINATED")) == "STARTED":
            break
    else:
        pytest.fail(f"no PULL transfer reached STARTED in {ATTEMPTS} attempts")
    suspend = {"@context": {"@vocab": edc.EDC_NS}, "@type": "SuspendTransfer", "reason": SUSPEND_REASON}
    answer = _consumer(env, "POST", f"/v3/transferprocesses/{transfer_id}/suspend", suspend)
    assert answer.status_code == 204, answer.text
    assert edc.wait_transfer_state(env.connectors, transfer_id, ("SUSPENDED", "TERMINATED")) == "SUSPENDED"
    wait_until(lambda: "TransferProcessSuspended" in stored_types(airflow, transfer_id), 30, "the Suspended callback")
    return transfer_id


def test_pull_transfer_suspended_and_resumed_while_a_sensor_waits(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    """A real PULL transfer, suspended and resumed through the consumer's Management API; the task is
    ``EdcTransferSensor(wait_for="started")`` (deferred, on the consumer's static callback).

    Exercised exactly: the transfer starts (``TransferProcessStarted``) and is suspended (``SUSPENDED``,
    ``TransferProcessSuspended``) before the sensor begins; the sensor reads that backlog, does not take
    the first Started (the transfer is suspended now) and stays deferred; the transfer is resumed while
    the sensor waits; EDC's second ``TransferProcessStarted`` ends the wait. The sensor succeeds once, on
    its first try, and shows Started, Suspended, Started in its XCom timeline and log. Terminating the
    transfer afterwards (as an EDR expiry would) leaves the finished task a success.
    """
    airflow.wait_for_dag(SENSOR_DAG)
    transfer_id = suspended_pull_transfer(edc_env, airflow)

    run_id = airflow.trigger_dag(
        SENSOR_DAG, conf={"transfer_process_id": transfer_id, "asset_id": "", "wait_for": "started"}
    )
    airflow.wait_for_task_state(SENSOR_DAG, run_id, SENSOR_TASK, {"deferred"}, 120)
    waiting = f"transfer process {transfer_id} was suspended after it started; waiting for it to be resumed"
    wait_until(
        lambda: waiting in airflow.task_log(SENSOR_DAG, run_id, SENSOR_TASK),
        60,
        "the trigger to read the backlog",
        interval=1.0,
    )
    assert airflow.task_instance(SENSOR_DAG, run_id, SENSOR_TASK)["state"] == "deferred"

    answer = _consumer(edc_env, "POST", f"/v3/transferprocesses/{transfer_id}/resume")
    assert answer.status_code == 204, answer.text
    assert airflow.wait_for_run(SENSOR_DAG, run_id, 120) == "success"
    assert edc_env.consumer_state(transfer_id) == "STARTED"

    result = airflow.xcom(SENSOR_DAG, run_id, SENSOR_TASK)
    assert (result["transfer_process_id"], result["state"], result["source"]) == (transfer_id, "STARTED", "callback")
    types = [t["type"] for t in result["timeline"]]
    suspended = types.index("TransferProcessSuspended")
    assert "TransferProcessStarted" in types[:suspended]  # started, then suspended
    assert types[suspended + 1 :].count("TransferProcessStarted") == 1  # resumed: started again, once
    assert types[-1] == "TransferProcessStarted"
    assert "TransferProcessTerminated" not in types
    tries = airflow.task_tries(SENSOR_DAG, run_id, SENSOR_TASK)
    assert [t["state"] for t in tries] == ["success"], tries
    log = airflow.task_log(SENSOR_DAG, run_id, SENSOR_TASK)
    assert f"Callback TransferProcessSuspended for transfer process {transfer_id}" in log
    assert f"Transfer process {transfer_id}: TransferProcessSuspended at" in log

    # a later termination of the PULL (an EDR expiry, a user's terminate) is not a failure of the task
    terminate = {"@context": {"@vocab": edc.EDC_NS}, "@type": "TerminateTransfer", "reason": "EDR expired"}
    answer = _consumer(edc_env, "POST", f"/v3/transferprocesses/{transfer_id}/terminate", terminate)
    assert answer.status_code == 204, answer.text
    assert edc_env.final_state(transfer_id) == "TERMINATED"
    wait_until(lambda: "TransferProcessTerminated" in stored_types(airflow, transfer_id), 30, "the Terminated callback")
    assert airflow.task_instance(SENSOR_DAG, run_id, SENSOR_TASK)["state"] == "success"
    assert [t["state"] for t in airflow.task_tries(SENSOR_DAG, run_id, SENSOR_TASK)] == ["success"]
    assert airflow.dag_run(SENSOR_DAG, run_id)["state"] == "success"
