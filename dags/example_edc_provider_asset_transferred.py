"""Example: the provider side runs a DAG whenever one of its assets has been transferred.

The provider connector's static callback (``airflow-edc-callbacks static-config NAME --events
transfer.process``) delivers its events; an ``AssetWatcher`` with ``EdcCallbackEventTrigger`` turns each
provider-side ``TransferProcessCompleted`` into one asset event, and so into one DAG run, once per
transfer (EDC may publish the event twice; it still counts once).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_edc_callbacks.triggers import EdcCallbackEventTrigger

# [START howto_trigger_edc_asset_watcher]
provider_transfers = Asset(
    "edc-provider-transfers",
    watchers=[
        AssetWatcher(
            name="edc_provider_transfer_completed",
            trigger=EdcCallbackEventTrigger(event_types=["TransferProcessCompleted"], process_type="PROVIDER"),
        )
    ],
)
# [END howto_trigger_edc_asset_watcher]

with DAG(
    dag_id="example_edc_provider_asset_transferred",
    schedule=[provider_transfers],
    catchup=False,
    tags=["edc", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def record_transfer(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log each transferred asset and return (asset id, transfer process id) pairs."""
        transfers = []
        for events in (triggering_asset_events or {}).values():
            for event in events:
                payload = (event.extra or {}).get("payload", event.extra or {})
                transfers.append(
                    {"asset_id": payload.get("asset_id"), "transfer_process_id": payload.get("process_id")}
                )
                print(f"Asset {payload.get('asset_id')} was transferred (transfer process {payload.get('process_id')})")
        return transfers

    record_transfer()
