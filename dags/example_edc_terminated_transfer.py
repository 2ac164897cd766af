"""Example: a transfer the connector terminates (its data source answers 500); the task fails with the
connector's reason and the transfer process id in the log.

Trigger it with the contract agreement id of ``broken-asset``::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:19194/protocol/2025-1",
     "sink_base_url": "http://127.0.0.1:18080/sink"}
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_edc_callbacks.operators import EdcTransferOperator

with DAG(
    dag_id="example_edc_terminated_transfer",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id for broken-asset"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
    },
    doc_md=__doc__,
) as dag:
    EdcTransferOperator(
        task_id="transfer_from_broken_source",
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "{{ params.sink_base_url }}/never"},
        timeout=timedelta(minutes=10),
        retries=0,
    )
