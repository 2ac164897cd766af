"""Example: a PUSH transfer from the demo provider connector into a local HTTP sink, resumed by callback.

The ``push_transfer`` task starts the transfer process on the consumer connector (connection
``edc_default``) with a dynamic callback address, defers, and resumes when the connector POSTs
``TransferProcessCompleted`` to the receiver on the api-server. ``report`` prints the result.

Trigger it with the contract agreement id of ``demo-asset`` (``python -m demo`` does all of this)::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:19194/protocol/2025-1",
     "sink_base_url": "http://127.0.0.1:18080/sink"}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_edc_callbacks.operators import EdcTransferOperator

# One sink path per DAG run (run ids contain ':' and '+').
SINK_URL = "{{ params.sink_base_url }}/example_edc_push_transfer/{{ run_id | replace(':', '_') | replace('+', '_') }}"

with DAG(
    dag_id="example_edc_push_transfer",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id for demo-asset"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_operator_edc_transfer_push]
    push_transfer = EdcTransferOperator(
        task_id="push_transfer",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": SINK_URL},
        asset_id="demo-asset",  # optional; names the input in OpenLineage from the task's start
        counter_party_id="provider",  # optional, lineage only
        timeout=timedelta(minutes=10),
        retries=2,  # a retry first looks for the earlier try's transfer, so it never starts a second one
        retry_delay=timedelta(seconds=3),
    )
    # [END howto_operator_edc_transfer_push]

    @task
    def report(result: dict[str, Any], sink_url: str) -> dict[str, Any]:
        """Print where the data landed and the callback timeline."""
        print(f"Transfer process {result['transfer_process_id']} is {result['state']} (via {result['source']})")
        for item in result["timeline"]:
            print(f"  {item['type']} at {item['at']} (epoch ms)")
        print(f"Data pushed to {sink_url}")
        return {"transfer_process_id": result["transfer_process_id"], "sink_url": sink_url}

    report(push_transfer.output, sink_url=SINK_URL)
