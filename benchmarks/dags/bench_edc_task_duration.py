"""The task-duration benchmark's DAGs: one deferrable PUSH transfer each, before and after the worker-first wait.

- ``bench_edc_defer_at_once``: ``defer_after=0``, the operator defers as soon as the transfer started
  (the behaviour before the worker-first wait);
- ``bench_edc_worker_first``: ``defer_after`` left to ``[edc_callbacks] defer_after`` (its default: the
  operator waits that long in the worker before it defers).

Both take the contract agreement, the provider's DSP address and the sink as DAG run parameters.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_edc_callbacks.operators import EdcTransferOperator

SINK_URL = "{{ params.sink_base_url }}/{{ dag.dag_id }}/{{ run_id | replace(':', '_') | replace('+', '_') }}"

for dag_id, defer_after in (("bench_edc_defer_at_once", 0.0), ("bench_edc_worker_first", None)):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        catchup=False,
        tags=["edc", "benchmark"],
        params={
            "contract_id": Param("", type="string"),
            "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
            "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
        },
    ):
        EdcTransferOperator(
            task_id="push_transfer",
            deferrable=True,
            defer_after=defer_after,
            contract_id="{{ params.contract_id }}",
            counter_party_address="{{ params.counter_party_address }}",
            transfer_type="HttpData-PUSH",
            data_destination={"type": "HttpData", "baseUrl": SINK_URL},
            timeout=timedelta(minutes=5),
        )
