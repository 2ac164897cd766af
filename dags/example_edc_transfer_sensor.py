"""Example: wait for a transfer process that something else started, on the connector's static callback.

The consumer connector must send its events to this Airflow through a static callback (register it with
``airflow-edc-callbacks static-config NAME --events transfer.process`` and deploy the printed settings).
Trigger with a transfer process id, or with an asset id to follow the first new transfer of that asset::

    {"asset_id": "demo-asset"}        or        {"transfer_process_id": "<id>"}

``wait_for`` is ``completed`` (default; PUSH) or ``started`` (PULL: its EDR is ready).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from airflow_edc_callbacks.sensors import EdcTransferSensor

with DAG(
    dag_id="example_edc_transfer_sensor",
    schedule=None,
    catchup=False,
    tags=["edc", "example"],
    params={
        "transfer_process_id": Param("", type="string"),
        "asset_id": Param("", type="string"),
        "wait_for": Param("completed", type="string", enum=["completed", "started"]),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
) as dag:
    # [START howto_sensor_edc_transfer]
    EdcTransferSensor(
        task_id="wait_for_transfer",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        transfer_process_id="{{ params.transfer_process_id or None }}",
        asset_id="{{ params.asset_id or None }}",
        wait_for="{{ params.wait_for }}",
        timeout=timedelta(minutes=10).total_seconds(),
    )
    # [END howto_sensor_edc_transfer]
