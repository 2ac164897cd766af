"""Example: a transfer that stops moving fails its task early, saying so, and is terminated.

A provider whose data plane never finishes a PUSH leaves the consumer's transfer ``STARTED`` for good; no
further callback comes, and the task's ``timeout`` may be hours away (a large transfer can take that
long). ``stall_timeout`` (here 30 s) ends the wait once the transfer has stayed in one state that long:
the trigger asks the connector once (a lost callback would show there), then the task fails with
``EdcTransferTimeout`` naming the transfer process, the connector and the state, adding "no change from
STARTED for 31 s", and ``terminate_on_timeout`` (default on) terminates the transfer first. A retry
starts a new transfer. ``[edc_callbacks] stall_timeout`` sets it for every task of a deployment.

Trigger it with the agreement id of an asset whose source answers slower than the stall time-out::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:19194/protocol/2025-1"}
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_edc_callbacks.operators import EdcTransferOperator

with DAG(
    dag_id="example_edc_transfer_stall",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_operator_edc_transfer_stall]
    EdcTransferOperator(
        task_id="transfer_with_stall_timeout",
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "{{ params.sink_base_url }}/stall"},
        timeout=timedelta(hours=6),
        stall_timeout=timedelta(seconds=30),  # no change of state for 30 s: give up and terminate
        deferrable=True,
        retries=0,
    )
    # [END howto_operator_edc_transfer_stall]
