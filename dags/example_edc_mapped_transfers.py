"""Example: many PUSH transfers at once with dynamic task mapping, each resumed by its own callback.

``destinations`` makes one sink address per transfer; ``transfer`` is mapped over them, so the run starts
``count`` transfer processes on the consumer connector (connection ``edc_default``) under one contract
agreement. Every mapped task defers; deferred tasks take no worker slot, so many can wait at once
(up to 1000 here), and each resumes on its transfer's ``TransferProcessCompleted``. ``summary`` counts the results.

Trigger it with a contract agreement id of a provider asset::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:19194/protocol/2025-1",
     "sink_base_url": "http://127.0.0.1:18080/sink", "count": 50}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_edc_callbacks.operators import EdcTransferOperator

with DAG(
    dag_id="example_edc_mapped_transfers",
    schedule=None,
    catchup=False,
    max_active_tasks=200,
    tags=["edc", "example"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
        "count": Param(10, type="integer", minimum=1, maximum=1000, description="How many transfers"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def destinations(params: dict[str, Any], run_id: str) -> list[dict[str, str]]:
        """One HttpData sink address per transfer (run ids contain ':' and '+')."""
        run = run_id.replace(":", "_").replace("+", "_")
        base = params["sink_base_url"]
        return [
            {"type": "HttpData", "baseUrl": f"{base}/example_edc_mapped_transfers/{run}/{i}"}
            for i in range(int(params["count"]))
        ]

    # [START howto_operator_edc_transfer_mapped]
    transfers = EdcTransferOperator.partial(
        task_id="transfer",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        timeout=timedelta(minutes=30),
        retries=2,  # a retry first looks for the earlier try's transfer, so it never starts a second one
        retry_delay=timedelta(seconds=3),
    ).expand(data_destination=destinations())
    # [END howto_operator_edc_transfer_mapped]

    @task
    def summary(results: list[dict[str, Any]]) -> dict[str, int]:
        """How many transfers ended in which state, and how each result was learned."""
        counts: dict[str, int] = {}
        for result in results:
            for key in (result["state"], f"via {result['source']}"):
                counts[key] = counts.get(key, 0) + 1
        print(counts)
        return counts

    summary(transfers.output)
