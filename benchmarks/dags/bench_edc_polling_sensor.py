"""The polling baseline of the end-to-end benchmark: what a pipeline looks like without callbacks.

``start`` starts a PUSH transfer process (no callback address) and ``wait`` is a plain Airflow
``PythonSensor`` in poke mode that asks the consumer for the transfer's state every ``N`` seconds until it
is COMPLETED. One DAG per interval: ``bench_edc_polling_5s`` and ``bench_edc_polling_30s``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, Param, get_current_context, task

from airflow_edc_callbacks.exceptions import EdcTransferFailed
from airflow_edc_callbacks.hooks.edc import EdcManagementHook

INTERVALS = (5, 30)


def transfer_completed(transfer_process_id: str) -> bool:
    """One poke: ``GET /v3/transferprocesses/{id}/state``; fails the sensor on TERMINATED."""
    hook = EdcManagementHook()
    state = hook.get_transfer_state(transfer_process_id)
    if state == "TERMINATED":
        raise EdcTransferFailed(transfer_process_id, hook.settings.base_url, state, None)
    return state == "COMPLETED"


for interval in INTERVALS:
    with DAG(
        dag_id=f"bench_edc_polling_{interval}s",
        schedule=None,
        catchup=False,
        max_active_runs=64,
        tags=["edc", "benchmark"],
        params={
            "contract_id": Param("", type="string"),
            "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
            "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
        },
    ):

        @task
        def start() -> str:
            """Start the transfer process; return its id."""
            context = get_current_context()
            params: dict[str, Any] = context["params"]
            run_id = context["run_id"]
            hook = EdcManagementHook()
            sink = f"{params['sink_base_url']}/polling/{run_id.replace(':', '_').replace('+', '_')}"
            request = hook.build_transfer_request(
                counter_party_address=params["counter_party_address"],
                contract_id=params["contract_id"],
                transfer_type="HttpData-PUSH",
                data_destination={"type": "HttpData", "baseUrl": sink},
            )
            return hook.start_transfer(request)

        PythonSensor(
            task_id="wait",
            python_callable=transfer_completed,
            op_args=[start()],
            poke_interval=interval,
            mode="poke",
            timeout=timedelta(minutes=10).total_seconds(),
        )
