"""Example: a transfer the consumer connector terminates; the task fails with the connector's reason and
the transfer process id in its log.

By default the request goes to a counter-party address where no provider listens, so the consumer
connector terminates the transfer process with its reason (e.g. "Failed to connect to ..."). With the
agreement of ``broken-asset`` (a data source that answers 500) and the real provider address, the
provider terminates it instead; EDC 0.15 consumers then report no reason (``reason: null``)::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:19999/protocol/2025-1"}
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
        "counter_party_address": Param("http://localhost:19999/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
    },
    doc_md=__doc__,
) as dag:
    EdcTransferOperator(
        task_id="transfer_from_broken_source",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "{{ params.sink_base_url }}/never"},
        timeout=timedelta(minutes=10),
        retries=0,
    )
