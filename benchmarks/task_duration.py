"""Task duration of a sub-second PUSH transfer with Airflow's default settings, before and after the worker-first wait.

The real demo connectors (Maven assembly, ``demo.connectors``) and a real ``airflow standalone`` with this
provider run the DAGs of ``benchmarks/dags/bench_edc_task_duration.py``: one deferrable
``EdcTransferOperator`` PUSH transfer of a source that answers at once (the transfer ends well within a
second), ``runs`` DAG runs each, one after the other (a run starts once the previous one ended, so the
runs do not compete for the two cores). The provider's transfer state machine idles
:data:`PROVIDER_ITERATION_WAIT_MS` between iterations instead of the demo's 1000 ms (which makes a race
of EDC 0.15.1 rare when many transfers start at once, see ``demo/edc/provider.properties``), so that the
transfer itself ends within a second, as the case measured is; a run the race ends is counted as not
measured:

- ``before``: ``bench_edc_defer_at_once`` (``defer_after=0``): the task defers as soon as the transfer
  started; the trigger holds an early event until ``[workers] min_heartbeat_interval`` + 1 s after the
  deferral (apache/airflow#71580), then the scheduler queues the task again and a worker resumes it;
- ``after``: ``bench_edc_worker_first`` (``[edc_callbacks] defer_after`` at its default): the task waits in
  the worker first and completes there when the transfer's callback comes within that time.

Airflow runs with its default scheduler and worker timings (the harness's quick settings for the end-to-end
tests are set back to Airflow's defaults: ``[workers] min_heartbeat_interval`` 5 s, the scheduler's idle
sleep 1 s, heartbeats 5 s). The figure of a run is the task instance's duration as Airflow records it
(``end_date - start_date``; a task resumed from a deferral keeps its first ``start_date``).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import free_port, percentile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
AIRFLOW_PORT = 28280
ASSET = "instant-asset"

AIRFLOW_DEFAULTS = {
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "15",
}
"""Airflow 3.3's defaults for what ``demo.airflow_env.FAST_SETTINGS`` shortens (the DAG processor's are kept:
they change how soon a DAG file is seen, not how long a task lasts)."""

PROVIDER_ITERATION_WAIT_MS = 100
"""``edc.transfer.state-machine.iteration-wait-millis`` of the provider in this benchmark (the consumer's
state machines idle 50 ms, as in the demo)."""

VARIANTS = (
    ("before: defer at once (defer_after=0)", "bench_edc_defer_at_once"),
    ("after: worker-first wait (default defer_after)", "bench_edc_worker_first"),
)


@dataclass
class DurationResult:
    """Task durations (seconds) of one variant's successful runs."""

    label: str
    dag_id: str
    runs: int
    durations_s: list[float] = field(repr=False)
    failed: list[str] = field(default_factory=list)
    transfers_s: list[float] = field(repr=False, default_factory=list)
    """Per run, the transfer's own time on the connector: ``at`` of its TransferProcessCompleted event minus
    ``at`` of its TransferProcessInitiated (the connector's clock)."""

    @property
    def p50(self) -> float:
        return percentile(self.durations_s, 50)

    @property
    def p95(self) -> float:
        return percentile(self.durations_s, 95)

    @property
    def transfer_p50(self) -> float:
        return percentile(self.transfers_s, 50)


def _epoch_s(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def task_duration_benchmark(runs: int, workdir: Path) -> list[DurationResult]:
    """Run both variants ``runs`` times on one standalone; see the module docstring.

    :raises RuntimeError: a connector or Airflow does not start (their logs are in the message).
    """
    from airflow_edc_callbacks.config import API_SERVER_PREFIX
    from airflow_edc_callbacks.store import EventStore
    from demo import connectors as edc
    from demo.airflow_env import AirflowStandalone
    from demo.data_server import start_data_server

    dags = workdir / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    source = HERE / "dags" / "bench_edc_task_duration.py"
    (dags / source.name).symlink_to(source)
    edc.build()
    data = start_data_server(free_port(), workdir / "sink")
    results: list[DurationResult] = []
    try:
        provider_settings = {"edc.transfer.state-machine.iteration-wait-millis": str(PROVIDER_ITERATION_WAIT_MS)}
        with edc.start(workdir / "connectors", data.url, properties={"provider": provider_settings}) as conns:
            with conns.client("provider") as provider:
                edc.add_asset(provider, ASSET, f"{data.url}/source/instant")
            agreement = edc.negotiate(conns, ASSET)
            connection = {"conn_type": "edc", "host": conns.consumer_management_url, "password": conns.consumer_api_key}
            env = {
                "AIRFLOW_CONN_EDC_DEFAULT": json.dumps(connection),
                "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}{API_SERVER_PREFIX}",
                **AIRFLOW_DEFAULTS,
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
                for label, dag_id in VARIANTS:
                    af.wait_for_dag(dag_id, deadline_s=120)
                    result = DurationResult(label, dag_id, runs, [])
                    for _ in range(runs):
                        run_id = af.trigger_dag(dag_id, conf=conf)
                        state = af.wait_for_run(dag_id, run_id, deadline_s=300)
                        ti = af.task_instance(dag_id, run_id, "push_transfer")
                        if state != "success" or not ti.get("start_date") or not ti.get("end_date"):
                            result.failed.append(f"{run_id}: {state}")
                            continue
                        result.durations_s.append(_epoch_s(ti["end_date"]) - _epoch_s(ti["start_date"]))
                        transfer_id = af.xcom(dag_id, run_id, "push_transfer")["transfer_process_id"]
                        at = {e.event_type: e.event_at for e in store.events(process_id=transfer_id)}
                        if {"TransferProcessInitiated", "TransferProcessCompleted"} <= set(at):
                            ended = at["TransferProcessCompleted"]
                            result.transfers_s.append((ended - at["TransferProcessInitiated"]) / 1000)
                    print(
                        f"[task duration] {label}: p50 {result.p50:.2f} s, p95 {result.p95:.2f} s, transfer itself "
                        f"p50 {result.transfer_p50:.2f} s over "
                        f"{len(result.durations_s)} runs; not measured: {result.failed or 'none'}",
                        flush=True,
                    )
                    results.append(result)
                store.dispose()
    finally:
        data.stop()
    return results


def report_lines(results: list[DurationResult]) -> list[str]:
    """The results as a Markdown table."""
    nan = float("nan")
    lines = [
        "| how the task waits | task p50 s | task p95 s | min s | max s | transfer itself p50 s | runs not measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.p50:.2f} | {r.p95:.2f} | {min(r.durations_s, default=nan):.2f} | "
            f"{max(r.durations_s, default=nan):.2f} | {r.transfer_p50:.2f} | {len(r.failed)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import sys
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks.task_duration", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="DAG runs per variant")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="edc-bench-airflow-"))
    results = task_duration_benchmark(args.runs, Path(tempfile.mkdtemp(prefix="edc-bench-duration-")))
    print("\n" + "\n".join(report_lines(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
