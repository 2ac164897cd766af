"""Static callbacks end to end: connectors started with the settings `static-config` rendered, a sensor
for a transfer started outside Airflow, and an asset-watcher DAG scheduled by the provider's events."""

from __future__ import annotations

from typing import Any

import pytest

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from tests.e2e.conftest import (
    ATTEMPTS,
    CONNECTOR_VERSION,
    STATIC_CALLBACKS,
    EdcEnvironment,
    StaticSettings,
    airflow_store,
)
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

SENSOR_DAG = "example_edc_transfer_sensor"
WATCHER_DAG = "example_edc_provider_asset_transferred"


def test_connectors_run_with_the_rendered_settings(static_settings: dict[str, StaticSettings]) -> None:
    consumer = static_settings["consumer"].settings
    assert CONNECTOR_VERSION.startswith("0.15")  # before 0.17: the auth-key / auth-code-id names
    assert consumer == {
        "edc.callback.consumercb.uri": "http://127.0.0.1:28080/edc-callbacks/callbacks/static/consumercb",
        "edc.callback.consumercb.events": "transfer.process",
        "edc.callback.consumercb.transactional": "false",
        "edc.callback.consumercb.auth-key": "X-Edc-Callback-Auth",
        "edc.callback.consumercb.auth-code-id": "edc-static-callback-consumercb",
    }


@pytest.mark.smoke("sensor_dag")
def test_sensor_waits_for_a_transfer_started_outside_airflow(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    airflow.wait_for_dag(SENSOR_DAG)
    for _ in range(ATTEMPTS):  # see ATTEMPTS: the sensor follows the first transfer, which must complete
        run_id = airflow.trigger_dag(SENSOR_DAG, conf={"asset_id": edc.DEMO_ASSET, "transfer_process_id": ""})
        airflow.wait_for_task_state(SENSOR_DAG, run_id, "wait_for_transfer", {"deferred"}, 120)
        # a plain Management API call, no callbackAddresses: only the static callback reports on it
        transfer_id = edc.start_push_transfer(
            edc_env.connectors, edc_env.agreements[edc.DEMO_ASSET], f"{edc_env.data_server.url}/sink/sensor"
        )
        completed = edc_env.final_state(transfer_id) == "COMPLETED"
        state = airflow.wait_for_run(SENSOR_DAG, run_id, 180)
        if completed:
            break
    assert state == "success"
    result = airflow.xcom(SENSOR_DAG, run_id, "wait_for_transfer")
    assert result["transfer_process_id"] == transfer_id
    assert result["state"] == "COMPLETED"
    assert result["source"] == "callback"
    assert all(item["routes"] == [f"static:{STATIC_CALLBACKS['consumer']}"] for item in result["timeline"])
    assert edc_env.proxy.requests_for(transfer_id) == []


def _asset_events_for(af: AirflowStandalone, transfer_id: str) -> list[dict[str, Any]]:
    response = af.request("GET", "/api/v2/assets/events", params={"limit": 1000})
    if response.status_code == 500:
        # Airflow 3.3 answers 500 while an asset event's DAG run is queued and has no start_date yet
        # (AssetEventResponse requires created_dagruns[].start_date); ask again
        return []
    response.raise_for_status()
    events = response.json()["asset_events"]
    return [
        e
        for e in events
        if e.get("name") == "edc-provider-transfers"
        and ((e.get("extra") or {}).get("payload") or {}).get("process_id") == transfer_id
    ]


def _runs_for(af: AirflowStandalone, transfer_id: str) -> list[dict[str, Any]]:
    runs = af.api("GET", f"/dags/{WATCHER_DAG}/dagRuns", params={"limit": 100})["dag_runs"]
    found = []
    for run in runs:
        if run["state"] != "success":
            continue
        transfers = af.xcom(WATCHER_DAG, run["dag_run_id"], "record_transfer")
        if any(t["transfer_process_id"] == transfer_id for t in transfers):
            found.append(run)
    return found


def test_provider_static_callback_schedules_the_watcher_dag_once_per_transfer(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    airflow.wait_for_dag(WATCHER_DAG)
    store = airflow_store(airflow)

    def watcher_cursor() -> int | None:
        from sqlalchemy import text

        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT seq FROM edc_trigger_cursor WHERE name LIKE 'event-trigger-%'")).first()
        return None if row is None else int(row[0])

    wait_until(watcher_cursor, 120, "the asset watcher to start watching")
    for _ in range(ATTEMPTS):  # see ATTEMPTS
        transfer_id = edc.start_push_transfer(
            edc_env.connectors, edc_env.agreements[edc.DEMO_ASSET], f"{edc_env.data_server.url}/sink/watched"
        )
        if edc_env.final_state(transfer_id) == "COMPLETED":
            break

    # the provider's own process id is the consumer process's correlationId
    with edc_env.connectors.client("consumer") as client:
        provider_id = client.get(f"/v3/transferprocesses/{transfer_id}").json()["correlationId"]
    completed = wait_until(
        lambda: [e for e in store.events(process_id=provider_id) if e.event_type == "TransferProcessCompleted"],
        60,
        "the provider's TransferProcessCompleted through its static callback",
    )
    assert all(e.routes == (f"static:{STATIC_CALLBACKS['provider']}",) for e in completed)
    # the watcher has read past every Completed event of this transfer (EDC may publish it twice)
    wait_until(lambda: (watcher_cursor() or 0) >= max(e.seq for e in completed), 60, "the watcher's cursor")
    # exactly one asset event for this transfer (both Completed callbacks are behind the cursor by now),
    # and the DAG run it scheduled
    events = wait_until(lambda: _asset_events_for(airflow, provider_id), 60, "the asset event")
    assert len(events) == 1, events
    runs = wait_until(lambda: _runs_for(airflow, provider_id), 120, "the watcher DAG run")
    assert len(runs) == 1, runs
