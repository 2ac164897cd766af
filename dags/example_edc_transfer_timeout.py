"""Example: a transfer whose provider never answers ends with a time-out that names it, and is terminated.

A provider that took the request and then never started it (no data plane for the transfer type, or its
termination message was lost) leaves the consumer's transfer ``REQUESTED`` for good, and no callback ever
comes. The task's ``timeout`` (here 1 minute) ends the wait: the task fails with ``EdcTransferTimeout``
naming the transfer process, the connector, the last state (``REQUESTED``) and how long it waited, and
``terminate_on_timeout`` (default on) terminates the transfer on the connector first.

Trigger it with an agreement id and the DSP address of a provider that does not answer::

    {"contract_id": "<agreement id>", "counter_party_address": "http://localhost:28071/protocol/2025-1"}
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_edc_callbacks.operators import EdcTransferOperator

with DAG(
    dag_id="example_edc_transfer_timeout",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id"),
        "counter_party_address": Param("http://localhost:28071/protocol/2025-1", type="string"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_operator_edc_transfer_timeout]
    EdcTransferOperator(
        task_id="transfer_with_timeout",
        contract_id="{{ params.contract_id }}",
        counter_party_address="{{ params.counter_party_address }}",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "{{ params.sink_base_url }}/timeout"},
        timeout=timedelta(seconds=60),
        terminate_on_timeout=True,  # the default: the transfer does not outlive its task
        deferrable=True,
        retries=0,
    )
    # [END howto_operator_edc_transfer_timeout]
