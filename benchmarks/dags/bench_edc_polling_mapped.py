"""The polling baseline of the scale benchmark (``benchmarks/scale.py``): N mapped PUSH transfers, each
waited for by a plain Airflow sensor that asks the connector for the transfer's state every 30 s in
``reschedule`` mode (the worker slot is given back between pokes; every poke is a new task start).

``EdcTransferSensor`` has no polling mode (it waits on callbacks, deferred or in the worker; its
``poke`` is not used), so this is what a pipeline without callbacks runs: ``start`` starts one transfer
per destination without a callback address, ``wait`` is mapped over the transfer process ids.
Same params as ``example_edc_mapped_transfers``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, PokeReturnValue, task

from airflow_edc_callbacks.exceptions import EdcTransferFailed
from airflow_edc_callbacks.hooks.edc import EdcManagementHook

POKE_INTERVAL_S = 30

with DAG(
    dag_id="bench_edc_polling_mapped",
    schedule=None,
    catchup=False,
    max_active_tasks=1000,
    tags=["edc", "benchmark"],
    params={
        "contract_id": Param("", type="string"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
        "count": Param(10, type="integer", minimum=1, maximum=1000),
    },
    doc_md=__doc__,
):

    @task
    def destinations(params: dict[str, Any], run_id: str) -> list[dict[str, str]]:
        """One HttpData sink address per transfer."""
        run = run_id.replace(":", "_").replace("+", "_")
        base = params["sink_base_url"]
        return [{"type": "HttpData", "baseUrl": f"{base}/polling/{run}/{i}"} for i in range(int(params["count"]))]

    @task(retries=2, retry_delay=timedelta(seconds=3))
    def start(destination: dict[str, str], params: dict[str, Any]) -> str:
        """Start one PUSH transfer process (no callback address); return its id."""
        hook = EdcManagementHook()
        request = hook.build_transfer_request(
            counter_party_address=params["counter_party_address"],
            contract_id=params["contract_id"],
            transfer_type="HttpData-PUSH",
            data_destination=destination,
        )
        return hook.start_transfer(request)

    @task.sensor(poke_interval=POKE_INTERVAL_S, mode="reschedule", timeout=timedelta(minutes=60).total_seconds())
    def wait(transfer_process_id: str) -> PokeReturnValue:
        """One poke: ``GET /v3/transferprocesses/{id}/state``; fails on TERMINATED."""
        hook = EdcManagementHook()
        state = hook.get_transfer_state(transfer_process_id)
        if state == "TERMINATED":
            raise EdcTransferFailed(transfer_process_id, hook.settings.base_url, state, None)
        return PokeReturnValue(is_done=state == "COMPLETED", xcom_value=state)

    wait.expand(transfer_process_id=start.expand(destination=destinations()))
