"""End to end in ``airflow standalone``: from the transfer's completion on the connector to the task's success.

The real demo connectors (Maven assembly, ``demo.connectors``) and a real ``airflow standalone`` with this
provider run the same PUSH transfer in three ways, ``runs`` DAG runs each, one run started every
``spacing_s`` seconds:

- ``callbacks``: ``example_edc_push_transfer`` (``EdcTransferOperator``, deferred, resumed by the
  connector's ``TransferProcessCompleted`` callback);
- ``polling every 5 s`` / ``every 30 s``: ``bench_edc_polling_{5,30}s`` (``benchmarks/dags``): a task
  starts the transfer and a ``PythonSensor`` in poke mode asks for its state at that interval.

The provider's source answers after a uniformly random 0 to ``longest_s`` seconds, so transfers end at
any point of a poll interval, as transfers of unknown length do. For each run the figure is the time from
the connector's ``stateTimestamp`` of the COMPLETED transfer process (epoch milliseconds, the connector's
clock, the same machine) to the task's ``end_date`` (Airflow's clock). For the callback runs the time
from the receiver's receipt of the first ``TransferProcessCompleted`` is also given.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import free_port

if TYPE_CHECKING:
    from airflow_edc_callbacks.store import EventStore
    from demo.airflow_env import AirflowStandalone
    from demo.connectors import Connectors

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
AIRFLOW_PORT = 28280
ASSET = "random-duration-asset"


@dataclass
class Variant:
    """One way to wait: the DAG, its waiting task, the task whose XCom names the transfer, the poll interval."""

    label: str
    dag_id: str
    task_id: str
    start_task_id: str
    poll_interval_s: float | None


VARIANTS = (
    Variant("callbacks (deferred operator)", "example_edc_push_transfer", "push_transfer", "push_transfer", None),
    Variant("polling sensor, every 5 s", "bench_edc_polling_5s", "wait", "start", 5.0),
    Variant("polling sensor, every 30 s", "bench_edc_polling_30s", "wait", "start", 30.0),
)


@dataclass
class EndToEndResult:
    """Seconds from the connector's COMPLETED to the task's success, one value per successful run."""

    label: str
    poll_interval_s: float | None
    runs: int
    latencies_s: list[float] = field(repr=False)
    from_callback_s: list[float] = field(repr=False, default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_s) if self.latencies_s else float("nan")

    @property
    def median_from_callback(self) -> float | None:
        return statistics.median(self.from_callback_s) if self.from_callback_s else None


def _epoch_s(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def end_to_end_benchmark(runs: int, spacing_s: float, longest_s: float, workdir: Path) -> list[EndToEndResult]:
    """Run every variant ``runs`` times on one standalone; see the module docstring.

    :raises RuntimeError: a connector or Airflow does not start (their logs are in the message).
    """
    from airflow_edc_callbacks.config import API_SERVER_PREFIX
    from airflow_edc_callbacks.store import EventStore
    from demo import connectors as edc
    from demo.airflow_env import AirflowStandalone
    from demo.data_server import start_data_server

    dags = workdir / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "dags" / "example_edc_push_transfer.py", HERE / "dags" / "bench_edc_polling_sensor.py"):
        (dags / source.name).symlink_to(source)
    edc.build()
    data = start_data_server(free_port(), workdir / "sink")
    results: list[EndToEndResult] = []
    try:
        with edc.start(workdir / "connectors", data.url) as conns:
            with conns.client("provider") as provider:
                edc.add_asset(provider, ASSET, f"{data.url}/source/random/{longest_s:g}")
            agreement = edc.negotiate(conns, ASSET)
            connection = {"conn_type": "edc", "host": conns.consumer_management_url, "password": conns.consumer_api_key}
            env = {
                "AIRFLOW_CONN_EDC_DEFAULT": json.dumps(connection),
                "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}{API_SERVER_PREFIX}",
                "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "64",
            }
            home = workdir / "airflow"
            shutil.rmtree(home, ignore_errors=True)
            with AirflowStandalone(home, dags, port=AIRFLOW_PORT, extra_env=env) as af:
                conf = {
                    "contract_id": agreement,
                    "counter_party_address": conns.provider_dsp_address,
                    "sink_base_url": f"{data.url}/sink",
                }
                store = EventStore(f"sqlite:///{home / 'edc_callbacks.db'}")
                try:
                    for variant in VARIANTS:
                        af.wait_for_dag(variant.dag_id, deadline_s=120)
                        result = _run_variant(af, conns, store, variant, conf, runs, spacing_s)
                        print(
                            f"[end-to-end] {result.label}: median {result.median:.2f} s over "
                            f"{len(result.latencies_s)} runs; not measured: {result.failed or 'none'}",
                            flush=True,
                        )
                        results.append(result)
                finally:
                    store.dispose()
    finally:
        data.stop()
    return results


def _run_variant(
    af: AirflowStandalone,
    conns: Connectors,
    store: EventStore,
    variant: Variant,
    conf: dict[str, Any],
    runs: int,
    spacing_s: float,
) -> EndToEndResult:
    """Trigger ``runs`` runs ``spacing_s`` seconds apart, wait for all, measure each successful one.

    A run that fails (EDC 0.15.1 now and then terminates a transfer by itself) or whose transfer cannot
    be measured is listed in ``failed`` with the reason, not measured.
    """
    run_ids = []
    for _ in range(runs):
        run_ids.append(af.trigger_dag(variant.dag_id, conf=conf))
        time.sleep(spacing_s)  # the pace of new runs, not a wait for anything
    result = EndToEndResult(variant.label, variant.poll_interval_s, runs, [])
    for run_id in run_ids:
        state = af.wait_for_run(variant.dag_id, run_id, deadline_s=900)
        if state != "success":
            result.failed.append(f"{run_id}: {state}")
            continue
        ended = _epoch_s(af.task_instance(variant.dag_id, run_id, variant.task_id)["end_date"])
        output = af.xcom(variant.dag_id, run_id, variant.start_task_id)
        transfer_id = output["transfer_process_id"] if isinstance(output, dict) else str(output)
        with conns.client("consumer") as consumer:
            response = consumer.get(f"/v3/transferprocesses/{transfer_id}")
        process = response.json() if response.is_success else {}
        if process.get("state") != "COMPLETED" or "stateTimestamp" not in process:
            result.failed.append(f"{run_id}: transfer {transfer_id} HTTP {response.status_code} {process.get('state')}")
            continue
        if variant.poll_interval_s is None:
            completed = [e for e in store.events(process_id=transfer_id) if e.event_type == "TransferProcessCompleted"]
            if not completed:
                result.failed.append(f"{run_id}: no TransferProcessCompleted stored for {transfer_id}")
                continue
            result.from_callback_s.append(ended - completed[0].received_at / 1000)
        result.latencies_s.append(ended - int(process["stateTimestamp"]) / 1000)
    return result
