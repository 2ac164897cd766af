"""Example: a transfer that delivers an Airflow asset, and a DAG scheduled on that asset.

``example_edc_asset_transfer`` starts a PULL transfer of ``demo-asset`` and fetches its data into a file;
the fetch declares the asset ``edc://localhost:19194/protocol/2025-1/demo-asset`` as its outlet, so each
successful run emits one asset event whose ``extra`` names the transfer (``transfer_process_id``,
``asset_id``, ``contract_id``, ``file``, ``size``, ``sha256``). ``example_edc_asset_consumer`` is
scheduled on that asset: it runs once per arrival and reads the file the event names.

With the OpenLineage provider installed (``pip install 'airflow-edc-callbacks[openlineage]'``), both
transfer tasks also report the provider's asset as input and the file as output.

Trigger the first with the contract agreement id of ``demo-asset`` (``python -m demo`` makes one)::

    {"contract_id": "<agreement id>", "output_dir": "/tmp/airflow-edc-callbacks"}
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_edc_callbacks.lineage import edc_asset, transfer_extra
from airflow_edc_callbacks.operators import EdcPullDataOperator, EdcTransferOperator

PROVIDER_DSP = "http://localhost:19194/protocol/2025-1"
RUN = "{{ run_id | replace(':', '_') | replace('+', '_') }}"

# [START howto_lineage_edc_asset_outlet]
DEMO_ASSET = edc_asset(PROVIDER_DSP, "demo-asset")  # edc://localhost:19194/protocol/2025-1/demo-asset

with DAG(
    dag_id="example_edc_asset_transfer",
    schedule=None,
    catchup=False,
    tags=["edc", "example", "lineage"],
    params={
        "contract_id": Param("", type="string", description="Contract agreement id for demo-asset"),
        "output_dir": Param("/tmp/airflow-edc-callbacks", type="string", description="where the data goes"),
    },
    doc_md=__doc__,
) as transfer_dag:
    pull_transfer = EdcTransferOperator(
        task_id="pull_transfer",
        deferrable=True,
        contract_id="{{ params.contract_id }}",
        counter_party_address=PROVIDER_DSP,
        counter_party_id="provider",  # lineage: the run facet's counter-party
        asset_id="demo-asset",  # lineage: names the input from the start
        transfer_type="HttpData-PULL",
        timeout=timedelta(minutes=10),
        retries=2,
        retry_delay=timedelta(seconds=3),
    )
    fetch_data = EdcPullDataOperator(
        task_id="fetch_data",
        transfer_process_id="{{ ti.xcom_pull(task_ids='pull_transfer')['transfer_process_id'] }}",
        destination="{{ params.output_dir }}/asset_transfer/" + RUN + "/demo-asset.json",
        counter_party_address=PROVIDER_DSP,  # lineage: the input's namespace
        terminate_after_fetch=True,
        outlets=[DEMO_ASSET],  # one asset event per successful fetch, with the transfer in its extra
    )
    pull_transfer >> fetch_data
# [END howto_lineage_edc_asset_outlet]

# [START howto_lineage_edc_asset_consumer]
with DAG(
    dag_id="example_edc_asset_consumer",
    schedule=[DEMO_ASSET],  # one run per asset event: per transfer that landed
    catchup=False,
    tags=["edc", "example", "lineage"],
    doc_md=__doc__,
) as consumer_dag:

    @task
    def read_transferred_file(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Read each file that arrived and check it against the SHA-256 its asset event carries."""
        arrivals = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                transfer = transfer_extra(event)  # the same keys from an operator or the asset watcher
                data = Path(transfer["file"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != transfer["sha256"]:
                    raise ValueError(f"{transfer['file']} changed since transfer {transfer['transfer_process_id']}")
                print(f"Transfer {transfer['transfer_process_id']} of {transfer['asset_id']}: {len(data)} bytes")
                arrivals.append({"transfer_process_id": transfer["transfer_process_id"], "size": len(data)})
        return arrivals

    read_transferred_file()
# [END howto_lineage_edc_asset_consumer]
