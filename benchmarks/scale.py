"""N concurrent mapped PUSH transfers on the real connectors, in Airflow as production runs it, twice:
resumed by callbacks, then waited for by polling sensors (every 30 s, ``reschedule`` mode).

``python -m benchmarks.run --only scale --transfers N`` (or ``python -m benchmarks.scale``). Set-up, all
on this machine:

- PostgreSQL (Debian's package, a throwaway cluster): Airflow's metadata database and the event store,
  two databases of one server.
- Airflow 3 as separate processes (``demo.airflow_cluster.AirflowCluster``): the scheduler with the
  LocalExecutor (``--parallelism`` task processes, 4 for 2 cores), the dag-processor, two triggerers and
  two api-servers. The connector sends its callbacks to a round-robin balancer in front of the two
  api-servers (``tests.e2e.counting_proxy.CountingProxy`` with two upstreams).
- The demo connectors (Maven-assembled EDC, ``demo.connectors``); the provider's source answers after
  ``--source-delay`` seconds. Airflow reaches the consumer's Management API through a counting proxy,
  so every request of every phase is counted by kind.

Phase 1, callbacks: ``example_edc_mapped_transfers`` with ``count=N`` (``EdcTransferOperator``, deferred
at once: ``[edc_callbacks] defer_after`` is ``--defer-after``, 0 by default, so that every transfer is
waited for by a trigger; the state-check fallback keeps its default). Phase 2, polling:
``bench_edc_polling_mapped`` (``benchmarks/dags``) with the same N: a mapped task starts each transfer
without a callback address, a mapped ``@task.sensor`` (``mode="reschedule"``, ``poke_interval=30``) asks
for its state.

Per phase: wall time from the first task's start to the last mapped task's end (Airflow's
``task_instance`` records); the connector's completion of the last transfer (the consumer's
``stateTimestamp`` of COMPLETED, asked directly after the phase, not through the proxy) measured from
the same first start; the last ``TransferProcessCompleted`` callback stored (phase 1); CPU-seconds and
peak memory of each component's process tree (psutil, sampled every second and at the phase's edges);
Management API requests by kind. The table is printed and appended to ``benchmarks/results.md``.
Every process started here is stopped at the end, also when a phase fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import free_port
from benchmarks.scale_measure import (
    RunSpan,
    Sampler,
    Usage,
    last_completion,
    requests_by_kind,
    run_span,
    state_requests,
    transfer_processes,
)
from benchmarks.scale_report import append_section, report_section

if TYPE_CHECKING:
    from demo.airflow_cluster import AirflowCluster
    from demo.connectors import Connectors
    from tests.postgres_server import PostgresServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PG_PORT = 25440  # as benchmarks/run.py: the benchmarks run alone
API_PORTS = (28380, 28381)
LOG_PORT_BASE = 28382  # the worker's log server, then one per triggerer
SIGNING_KEY = "scale-benchmark-signing-key-0123456789"


@dataclass
class Phase:
    """One way of waiting: its DAG, the mapped task whose instances end when their transfer ended."""

    label: str
    dag_id: str
    waiting_task: str


PHASES = (
    Phase("callbacks (deferred operators)", "example_edc_mapped_transfers", "transfer"),
    Phase("polling sensors, 30 s, reschedule", "bench_edc_polling_mapped", "wait"),
)


@dataclass
class PhaseResult:
    """What one phase measured (see the module docstring)."""

    label: str
    transfers: int
    run_state: str
    span: RunSpan | None
    connector_last_s: float | None
    """Seconds from the run's first task start to the connector's COMPLETED of its last transfer."""
    callback_last_s: float | None
    """Seconds from the run's first task start to the receipt of the last TransferProcessCompleted."""
    processes: Counter[str]
    """The new transfer processes on the consumer by final state."""
    requests: Counter[str]
    usage: dict[str, Usage | None]
    callbacks_per_receiver: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def state_requests(self) -> int:
        return state_requests(self.requests)

    @property
    def ratio(self) -> float | None:
        """Wall time over the connector-side completion of the last transfer."""
        if self.span is None or not self.connector_last_s:
            return None
        return self.span.wall_s / self.connector_last_s


def _consumer_processes(conns: Connectors) -> dict[str, tuple[str, int]]:
    """Every transfer process on the consumer, asked directly (not counted): ``{id: (state, stamp ms)}``."""
    query = {"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "QuerySpec", "limit": 100_000}
    with conns.client("consumer", timeout=120) as client:
        response = client.post("/v3/transferprocesses/request", json=query)
        response.raise_for_status()
        return transfer_processes(response.json())


def _task_instances(database_url: str, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, row_factory=dict_row) as db:
        return db.execute(
            "SELECT task_id, map_index, state, start_date, end_date, try_number FROM task_instance"
            " WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        ).fetchall()


def _callback_last(store_url: str, ids: set[str]) -> float | None:
    """Epoch seconds of the last stored TransferProcessCompleted of ``ids``."""
    from airflow_edc_callbacks.store import EventStore

    store = EventStore(store_url)
    try:
        stamps = [
            e.received_at for e in store.events() if e.event_type == "TransferProcessCompleted" and e.process_id in ids
        ]
    finally:
        store.dispose()
    return max(stamps) / 1000 if stamps else None


@dataclass
class Bench:
    """The running set-up of one benchmark run."""

    args: argparse.Namespace
    pg: PostgresServer
    conns: Connectors
    proxy: Any
    balancer: Any
    cluster: AirflowCluster
    airflow_db: str
    store_url: str
    conf: dict[str, Any]
    sampler: Sampler | None = None

    def run_phase(self, phase: Phase) -> PhaseResult:
        af, n = self.cluster, self.args.transfers
        af.wait_for_dag(phase.dag_id, deadline_s=300)
        before = set(_consumer_processes(self.conns))
        sampler = self.sampler
        if sampler is None:
            raise RuntimeError("start the sampler before a phase")
        forwarded = {url: len(got) for url, got in self.balancer.forwarded.items()}
        started = sampler.sample_now()
        run_id = af.trigger_dag(phase.dag_id, conf={**self.conf, "count": n})
        print(f"[scale] {phase.label}: {n} transfers, run {run_id}", flush=True)
        try:
            state = af.wait_for_run(phase.dag_id, run_id, deadline_s=self.args.deadline)
        except TimeoutError as err:
            print(f"[scale] {phase.label}: {err}", flush=True)
            state = "timed out"
        ended = sampler.sample_now()
        rows = _task_instances(self.airflow_db, phase.dag_id, run_id)
        try:
            span: RunSpan | None = run_span(rows, phase.waiting_task)
        except ValueError as err:
            print(f"[scale] {phase.label}: {err}", flush=True)
            span = None
        processes = _consumer_processes(self.conns)
        new = set(processes) - before
        connector_last = last_completion(processes, new)
        callback_last = _callback_last(self.store_url, new) if phase.waiting_task == "transfer" else None
        first = span.first_start if span else None
        result = PhaseResult(
            phase.label,
            n,
            state,
            span,
            connector_last - first if connector_last and first else None,
            callback_last - first if callback_last and first else None,
            Counter(processes[i][0] for i in new),
            requests_by_kind(self.proxy.requests, started, ended),
            sampler.usage(started, ended),
            {url: len(got) - forwarded[url] for url, got in self.balancer.forwarded.items()},
            ended - started,
        )
        print(f"[scale] {phase.label}: {state} after {result.seconds:.0f} s; {_summary(result)}", flush=True)
        return result


def _summary(r: PhaseResult) -> str:
    wall = f"{r.span.wall_s:.1f} s" if r.span else "-"
    connector = f"{r.connector_last_s:.1f} s" if r.connector_last_s else "-"
    return (
        f"wall {wall}, connector-side {connector}, {r.state_requests} state requests, "
        f"requests {dict(r.requests)}, processes {dict(r.processes)}"
    )


@contextlib.contextmanager
def _stopping(what: str, stop: Callable[[], Any]) -> Iterator[None]:
    """Run ``stop`` on leaving, whatever happened; a failing stop is printed, not raised over the error."""
    try:
        yield
    finally:
        try:
            stop()
        except Exception as err:  # keep stopping the rest
            print(f"[scale] stopping {what} failed: {err!r}", file=sys.stderr, flush=True)


def scale_benchmark(args: argparse.Namespace, workdir: Path) -> list[PhaseResult]:
    """Set everything up, run both phases, stop everything (see the module docstring).

    :raises RuntimeError: a connector, PostgreSQL or an Airflow component does not start.
    """
    from airflow_edc_callbacks.config import API_SERVER_PREFIX
    from demo import connectors as edc
    from demo.airflow_cluster import AirflowCluster
    from demo.data_server import start_data_server
    from tests.e2e.counting_proxy import CountingProxy
    from tests.postgres_server import PostgresServer

    dags = workdir / "dags"
    dags.mkdir(parents=True)
    for source in (REPO / "dags" / "example_edc_mapped_transfers.py", HERE / "dags" / "bench_edc_polling_mapped.py"):
        (dags / source.name).symlink_to(source)
    edc.build()
    results: list[PhaseResult] = []
    with contextlib.ExitStack() as stack:
        pg = PostgresServer(port=args.pg_port).start()
        stack.enter_context(_stopping("PostgreSQL", pg.destroy))
        data = start_data_server(free_port(), workdir / "sink")
        stack.enter_context(_stopping("the data server", data.stop))
        conns = edc.start(workdir / "connectors", data.url, reuse=False)
        stack.enter_context(_stopping("the connectors", conns.stop))
        proxy = CountingProxy(upstream=f"http://127.0.0.1:{edc.CONSUMER.management_port}", port=free_port()).start()
        stack.enter_context(_stopping("the counting proxy", proxy.stop))
        balancer = CountingProxy(upstream=[f"http://127.0.0.1:{p}" for p in API_PORTS], port=free_port()).start()
        stack.enter_context(_stopping("the balancer", balancer.stop))

        asset = f"scale-asset-{args.source_delay:g}"
        with conns.client("provider") as provider:
            edc.add_asset(provider, asset, f"{data.url}/source/slow/{args.source_delay:g}")
        agreement = edc.negotiate(conns, asset)
        store_url, airflow_db = pg.create_database(), pg.create_database()
        connection = {
            "conn_type": "edc",
            "host": f"{proxy.url}{edc.CONSUMER.management_path}",
            "password": conns.consumer_api_key,
        }
        env = {
            "AIRFLOW_CONN_EDC_DEFAULT": json.dumps(connection),
            "AIRFLOW__EDC_CALLBACKS__STORE_URL": store_url,
            "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"{balancer.url}{API_SERVER_PREFIX}",
            "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": SIGNING_KEY,
            "AIRFLOW__EDC_CALLBACKS__DEFER_AFTER": f"{args.defer_after:g}",
            "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
        }
        cluster = AirflowCluster(
            workdir / "airflow", dags, airflow_db, API_PORTS, triggerers=2, log_port_base=LOG_PORT_BASE, extra_env=env
        )
        stack.enter_context(_stopping("the Airflow components", cluster.stop))
        cluster.start()
        cluster.poll_interval = 2.0  # waiting for a run asks the first api-server: not 4 times a second
        roots = {name: c.proc.pid for name, c in cluster.components.items() if c.proc is not None}
        roots |= {f"connector ({side})": p.pid for side, p in conns.processes.items()}
        roots["PostgreSQL"] = int((pg.data / "postmaster.pid").read_text().split()[0])
        driver = "this process (proxies, data server, sampler)"
        roots[driver] = os.getpid()
        sampler = Sampler(roots, alone=frozenset({driver})).start()
        stack.enter_context(_stopping("the sampler", sampler.stop))
        bench = Bench(
            args,
            pg,
            conns,
            proxy,
            balancer,
            cluster,
            airflow_db,
            store_url,
            {
                "contract_id": agreement,
                "counter_party_address": conns.provider_dsp_address,
                "sink_base_url": f"{data.url}/sink",
            },
            sampler,
        )
        for phase in PHASES:
            if phase.waiting_task == "wait" and args.skip_polling:
                continue
            results.append(bench.run_phase(phase))
            try:
                cluster.check_alive(f"the end of {phase.label}")
            except RuntimeError as err:  # the figures stand; the report says which component died
                print(f"[scale] {err}", file=sys.stderr, flush=True)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scale benchmark's options (shared with ``benchmarks/run.py``)."""
    group = parser.add_argument_group("scale (--only scale)")
    group.add_argument("--transfers", type=int, default=500, help="concurrent mapped transfers per phase")
    group.add_argument("--source-delay", type=float, default=5.0, help="seconds the provider's source takes")
    group.add_argument("--parallelism", type=int, default=4, help="LocalExecutor task processes")
    group.add_argument("--defer-after", type=float, default=0.0, help="[edc_callbacks] defer_after, seconds")
    group.add_argument("--deadline", type=float, default=3600.0, help="seconds a phase's run may take")
    group.add_argument("--pg-port", type=int, default=PG_PORT, help="port of the throwaway PostgreSQL")
    group.add_argument("--skip-polling", action="store_true", help="run the callbacks phase only")


def run(args: argparse.Namespace, results_md: Path) -> int:
    """Run the benchmark, print its table and append it to ``results_md``; 0 when every target is met."""
    workdir = Path(tempfile.mkdtemp(prefix="edc-bench-scale-"))
    started = time.perf_counter()
    try:
        results = scale_benchmark(args, workdir)
    finally:
        print(f"[scale] logs and files in {workdir} (deleted when every run succeeded)", flush=True)
    section, met = report_section(results, args, time.perf_counter() - started)
    print(section)
    append_section(results_md, section)
    print(f"[scale] appended to {results_md}")
    if met and all(r.run_state == "success" for r in results):  # else the components' logs tell why
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), HERE / "results.md")


if __name__ == "__main__":
    raise SystemExit(main())
