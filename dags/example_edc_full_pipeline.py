"""Example: the whole consumer pipeline against a provider connector, every wait driven by callbacks.

- ``negotiate``: catalog -> offer -> contract negotiation; resumes on ``ContractNegotiationFinalized``.
- ``push_transfer``: a PUSH transfer under the new agreement into an HTTP sink; resumes on
  ``TransferProcessCompleted``.
- ``pull_transfer``: a PULL transfer under the same agreement; resumes on ``TransferProcessStarted`` (the
  EDR is ready). ``fetch_data`` then downloads the data from the provider's public endpoint with the
  EDR, read through the hook (the token never reaches XCom or the log), into a local file.
- ``negotiate_and_pull``: the same negotiation, PULL transfer and download as ONE task
  (``EdcNegotiatedTransferOperator``), deferring twice.
- ``report``: logs the size and checksum of each file and where every step's result came from.

The connection (``edc_conn_id``) decides the Management API version: its extra ``api_version`` is ``v3``,
``v4beta`` or ``v4``. ``offer`` replaces the catalog's first offer (an offer the provider never made ends
``negotiate`` failed with the connector's reason). ``python -m demo`` (``scripts/demo.sh``) runs this DAG
against the demo connectors; by hand, trigger it with::

    {"counter_party_address": "http://localhost:19194/protocol/2025-1", "counter_party_id": "provider",
     "asset_id": "demo-asset", "sink_base_url": "http://127.0.0.1:18080/sink", "output_dir": "/tmp/edc-data"}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_edc_callbacks.operators import (
    EdcContractNegotiationOperator,
    EdcNegotiatedTransferOperator,
    EdcPullDataOperator,
    EdcTransferOperator,
)

RUN = "{{ run_id | replace(':', '_') | replace('+', '_') }}"
AGREEMENT = "{{ ti.xcom_pull(task_ids='negotiate')['contract_agreement_id'] }}"
COMMON: dict[str, Any] = {
    "counter_party_address": "{{ params.counter_party_address }}",
    "edc_conn_id": "{{ params.edc_conn_id }}",
    "timeout": timedelta(minutes=10),
}
# A connector may end a negotiation or transfer by itself (EDC 0.15.1 races, network faults): retry.
# A transfer task's retry first looks for the earlier try's running transfer, so it never starts a second one.
RETRIES: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(seconds=3)}

with DAG(
    dag_id="example_edc_full_pipeline",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "edc_conn_id": Param("edc_default", type="string", description="edc connection of the consumer"),
        "counter_party_address": Param("http://localhost:19194/protocol/2025-1", type="string"),
        "counter_party_id": Param("provider", type="string"),
        "asset_id": Param("demo-asset", type="string"),
        "offer": Param(None, type=["null", "object"], description="an offer to use instead of the catalog's"),
        "sink_base_url": Param("http://127.0.0.1:18080/sink", type="string"),
        "output_dir": Param("/tmp/airflow-edc-callbacks", type="string", description="where PULL data goes"),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_operator_edc_negotiation]
    negotiate = EdcContractNegotiationOperator(
        task_id="negotiate",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        asset_id="{{ params.asset_id }}",
        counter_party_id="{{ params.counter_party_id }}",
        offer="{{ params.offer | tojson }}",  # JSON text; "null" takes the catalog's first offer
        **COMMON,
        **RETRIES,
    )
    # [END howto_operator_edc_negotiation]

    push_transfer = EdcTransferOperator(
        task_id="push_transfer",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        contract_id=AGREEMENT,
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "{{ params.sink_base_url }}/full_pipeline/" + RUN},
        **COMMON,
        **RETRIES,
    )

    # [START howto_operator_edc_pull]
    pull_transfer = EdcTransferOperator(
        task_id="pull_transfer",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        contract_id=AGREEMENT,
        transfer_type="HttpData-PULL",  # resumes on TransferProcessStarted: the EDR is ready
        **COMMON,
        **RETRIES,
    )
    fetch_data = EdcPullDataOperator(
        task_id="fetch_data",
        transfer_process_id="{{ ti.xcom_pull(task_ids='pull_transfer')['transfer_process_id'] }}",
        destination="{{ params.output_dir }}/" + RUN + "/{{ params.asset_id }}.pulled",
        edc_conn_id="{{ params.edc_conn_id }}",
    )
    # [END howto_operator_edc_pull]

    # [START howto_operator_edc_negotiated_transfer]
    negotiate_and_pull = EdcNegotiatedTransferOperator(
        task_id="negotiate_and_pull",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        asset_id="{{ params.asset_id }}",
        counter_party_id="{{ params.counter_party_id }}",
        offer="{{ params.offer | tojson }}",
        transfer_type="HttpData-PULL",
        destination="{{ params.output_dir }}/" + RUN + "/{{ params.asset_id }}.one-step",
        **COMMON,
        **RETRIES,
    )
    # [END howto_operator_edc_negotiated_transfer]

    @task
    def report(
        negotiation: dict[str, Any],
        push: dict[str, Any],
        pull: dict[str, Any],
        fetched: dict[str, Any],
        one: dict[str, Any],
    ) -> dict[str, Any]:
        """Log each step's state and source, and the size of each downloaded file."""
        steps = {
            "negotiate": negotiation["source"],
            "push_transfer": push["source"],
            "pull_transfer": pull["source"],
            # None when a retry (or a cleared task) took over the transfer an earlier try started
            "negotiate_and_pull.negotiation": (one["negotiation"] or {}).get("source"),
            "negotiate_and_pull.transfer": one["source"],
        }
        for step, source in steps.items():
            print(f"{step}: resumed by {source}")
        for label, data in (("fetch_data", fetched), ("negotiate_and_pull", one["data"])):
            print(f"{label}: {data['size']} bytes (sha256 {data['sha256']}) in {data['file']}")
        return {"sources": steps, "sizes": {"fetch_data": fetched["size"], "negotiate_and_pull": one["data"]["size"]}}

    negotiate >> [push_transfer, pull_transfer]
    pull_transfer >> fetch_data
    report(negotiate.output, push_transfer.output, pull_transfer.output, fetch_data.output, negotiate_and_pull.output)
