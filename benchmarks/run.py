"""``python -m benchmarks.run``: measure the receiver and the waiting triggers, side by side, on this machine.

Writes ``benchmarks/results.md`` (tables) and ``benchmarks/results.png`` (plots). Every figure of a table
comes from the same run. PostgreSQL is a throwaway cluster of Debian's package (tests/postgres_server.py)
on port 25440; SQLite is a file in a temporary directory.

1. Receiver throughput and latency: N callbacks POSTed by C concurrent clients to (a) a bare FastAPI
   endpoint answering 204 and (b) the receiver storing each event durably (SQLite, PostgreSQL), each on
   uvicorn with one worker in its own process, in turn, three rounds over (``--rounds``). The client runs
   on the same 2-core machine.
   Then one serial sender (``benchmarks/serial.py``): callbacks one after another from one client, as an
   EDC connector's dispatcher sends them; its p50 / p99 latency per server.
2. Wake-up latency: 1, 100 and 10,000 ``EdcCallbackTrigger`` waiting in one process; for a sample of them
   an event is stored by another connection (as the receiver does) and the time from that commit to the
   trigger's event is taken. A fresh trigger takes each fired one's place, so as many keep waiting.
3. The cost of 10,000 waiting triggers in one process over an idle window: CPU seconds, resident memory,
   database connections and requests to the connector, against 10,000 polling sensors at a 30 s interval
   (one state GET per sensor per interval, as a poking sensor does) over the same window.
4. End to end in ``airflow standalone`` on the real connectors: from the transfer's completion to the
   task's success, callbacks against polling sensor DAGs at 5 s and 30 s (``benchmarks/end_to_end.py``).
    durations = task_duration_benchmark(args.duration_runs, workdir / "duration")
    results_md = HERE / "results.md"
    kept = saved_section(results_md.read_text()) if results_md.exists() else None  # the last scale run's
    write_report(receiver, wake, costs, end_to_end, args, time.perf_counter() - started, serial, durations)
    if kept:
        append_section(results_md, kept)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psutil

from benchmarks import scale
from benchmarks.common import Latencies
from benchmarks.end_to_end import EndToEndResult, end_to_end_benchmark
from benchmarks.load import LoadResult, receiver_variants
from benchmarks.load import envelope as _envelope
from benchmarks.load import load as _load
from benchmarks.load import server as _server
from benchmarks.scale_report import append_section, saved_section
from benchmarks.serial import serial_benchmark
from benchmarks.task_duration import (
    PROVIDER_ITERATION_WAIT_MS,
    DurationResult,
    report_lines,
    task_duration_benchmark,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PG_PORT = 25440


def receiver_benchmark(
    sqlite_url: str, pg_url: str, requests: int, concurrency: int, rounds: int = 3
) -> list[LoadResult]:
    """Each server in turn, ``rounds`` times over (bare, SQLite, PostgreSQL, bare, ...): a shared machine's
    speed drifts between minutes, so each ratio is taken within a round and the median of the rounds is
    reported; a server's row is its round of median rate."""
    variants = receiver_variants(sqlite_url, pg_url)
    runs: dict[str, list[LoadResult]] = {label: [] for label, _ in variants}
    for round_no in range(1, rounds + 1):
        for label, args in variants:
            with _server(*args) as base:
                result = asyncio.run(_load(base, label, requests, concurrency))
            print(
                f"[receiver] round {round_no} {label}: {result.throughput:.0f} req/s, "
                f"p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms"
            )
            runs[label].append(result)
    bare = runs[variants[0][0]]
    results = []
    for label, _ in variants:
        ordered = sorted(runs[label], key=lambda r: r.throughput)
        row = ordered[(len(ordered) - 1) // 2]  # the lower median, as statistics.median_low
        row.vs_bare = statistics.median_low(r.throughput / b.throughput for r, b in zip(runs[label], bare, strict=True))
        row.rounds = rounds
        results.append(row)
    return results


# -- 2. and 3. waiting triggers ---------------------------------------------------------------------
@dataclass
class WakeResult(Latencies):
    backend: str
    waiting: int
    startup_s: float
    latencies_ms: list[float] = field(repr=False)


@dataclass
class CostResult:
    label: str
    waiting: int
    window_s: float
    cpu_s: float
    rss_mb: float
    db_connections: int | None
    connector_requests: int
    wall_s: float = 0.0


def _connector_requests(base: str) -> int:
    return int(httpx.get(f"{base}/count", timeout=10).json()["requests"])


def _db_connections(url: str, store_file: str | None) -> int:
    if store_file is not None:  # SQLite: open handles of this process on the database file
        return sum(1 for f in psutil.Process().open_files() if f.path == store_file)
    import psycopg

    database = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={PG_PORT} user=postgres dbname=postgres", autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


async def _run_one(trigger: Any, fired: dict[str, float]) -> None:
    """Run a trigger to its first event; note when it came (``time.perf_counter``)."""
    events = cast("AsyncGenerator[Any, None]", trigger.run())
    try:
        await events.__anext__()
        fired[trigger.transfer_process_id] = time.perf_counter()
    finally:
        await events.aclose()


async def _waiting_triggers(
    backend: str, url: str, store_file: str | None, counts: list[int], samples: int, idle_s: float, connector: str
) -> tuple[list[WakeResult], CostResult | None]:
    from airflow_edc_callbacks.models import EventEnvelope
    from airflow_edc_callbacks.store import EventStore, get_listener, get_store
    from airflow_edc_callbacks.triggers import EdcCallbackTrigger

    os.environ["AIRFLOW__EDC_CALLBACKS__STORE_URL"] = url
    os.environ["AIRFLOW_CONN_EDC_BENCH"] = (
        f'{{"conn_type": "edc", "host": "{connector}/management", "password": "k"}}'  # only a fallback uses it
    )
    store = get_store(url, waiting=True)  # the store the triggers use
    loop = asyncio.get_running_loop()
    reads = 0
    expected = 0
    all_read = asyncio.Event()
    original_events = store.events

    def counted_events(**kwargs: Any) -> Any:
        nonlocal reads
        found = original_events(**kwargs)
        reads += 1  # under the GIL; only compared, never lost for the purpose of this wait
        if reads >= expected:
            loop.call_soon_threadsafe(all_read.set)
        return found

    store.events = counted_events  # type: ignore[method-assign]
    writer = EventStore(url)  # another connection pool, as the receiver's
    results: list[WakeResult] = []
    cost: CostResult | None = None
    for count in counts:
        run_id = uuid.uuid4().hex[:8]
        fired: dict[str, float] = {}

        triggers = [
            EdcCallbackTrigger(
                correlation_id=f"{run_id}-{i}",
                transfer_process_id=f"{run_id}-tp-{i}",
                conn_id="edc_bench",
                fallback_check_interval=3600,
            )
            for i in range(count)
        ]
        reads, expected = 0, count
        all_read.clear()
        started = time.perf_counter()
        tasks = [asyncio.create_task(_run_one(t, fired)) for t in triggers]
        await all_read.wait()  # every trigger subscribed and read the store: all are waiting now
        startup = time.perf_counter() - started
        listener = get_listener(store)
        print(f"[wake-up] {backend}: {count} triggers waiting after {startup:.1f} s")

        if count == max(counts):
            process = psutil.Process()
            writer.engine.dispose()  # the receiver's connections belong to another process in production
            await asyncio.sleep(1.0)
            cpu_before = sum(process.cpu_times()[:2])
            requests_before = await asyncio.to_thread(_connector_requests, connector)
            await asyncio.sleep(idle_s)  # idle: the figure is what this costs
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            cost = CostResult(
                f"{count} triggers, {backend}",
                count,
                idle_s,
                cpu,
                process.memory_info().rss / 2**20,
                _db_connections(url, store_file),
                await asyncio.to_thread(_connector_requests, connector) - requests_before,
                idle_s,
            )
            print(f"[waiting] {cost}")

        latencies = []
        step = max(1, count // samples)
        for n in range(samples):
            i = (n * step) % count
            trigger = triggers[i]
            body = _envelope(trigger.transfer_process_id)
            envelope = EventEnvelope.model_validate(body)
            await asyncio.to_thread(writer.record, envelope, body, correlation_id=trigger.correlation_id)
            committed = time.perf_counter()
            deadline = committed + 30
            while trigger.transfer_process_id not in fired:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"trigger {i} of {count} never fired")
                await asyncio.sleep(0.0005)
            latencies.append((fired[trigger.transfer_process_id] - committed) * 1000)
            # a fresh trigger takes the fired one's place, so that `count` keep waiting for the next sample
            triggers[i] = EdcCallbackTrigger(
                correlation_id=f"{run_id}-{i}-{n}",
                transfer_process_id=f"{run_id}-tp-{i}-{n}",
                conn_id="edc_bench",
                fallback_check_interval=3600,
            )
            reads, expected = 0, 1
            all_read.clear()
            tasks.append(asyncio.create_task(_run_one(triggers[i], fired)))
            await all_read.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        result = WakeResult(backend, count, startup, latencies)
        print(f"[wake-up] {backend}, {count} waiting: p50 {result.p50:.1f} ms, p99 {result.p99:.1f} ms")
        results.append(result)
        assert listener.subscription_count == 0
    writer.dispose()
    get_listener(store).stop()
    store.dispose()
    return results, cost


def polling_cost(count: int, interval_s: float, window_s: float, connector: str) -> CostResult:
    """``count`` sensors each GETting their transfer's state every ``interval_s``, over ``window_s``,
    all in this process (the connector stand-in runs in its own): the cheapest possible poller, one
    asyncio loop; Airflow's own sensors cost a worker slot or a triggerer coroutine each on top."""
    process = psutil.Process()

    async def poll(client: httpx.AsyncClient, i: int, stop_at: float) -> None:
        await asyncio.sleep(interval_s * i / count)  # spread over the interval, as sensors started at random
        while time.perf_counter() < stop_at:
            await client.get(f"{connector}/management/v3/transferprocesses/tp-{i}/state")
            await asyncio.sleep(interval_s)

    async def run() -> tuple[float, int, float]:
        # enough keep-alive connections that the client pool does not dominate the cost
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            before = await asyncio.to_thread(_connector_requests, connector)
            cpu_before = sum(process.cpu_times()[:2])
            started = time.perf_counter()
            stop_at = started + window_s
            await asyncio.gather(*(poll(client, i, stop_at) for i in range(count)))
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            wall = time.perf_counter() - started
            return cpu, await asyncio.to_thread(_connector_requests, connector) - before, wall

    cpu, requests, wall = asyncio.run(run())
    return CostResult(
        f"{count} polling sensors, every {interval_s:.0f} s",
        count,
        window_s,
        cpu,
        process.memory_info().rss / 2**20,
        None,
        requests,
        wall,
    )


# -- report -------------------------------------------------------------------------------------------
def write_report(
    receiver: list[LoadResult],
    wake: list[WakeResult],
    costs: list[CostResult],
    end_to_end: list[EndToEndResult],
    args: argparse.Namespace,
    seconds: float,
    serial: list[LoadResult] | None = None,
    durations: list[DurationResult] | None = None,
) -> None:
    bare = receiver[0]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `python -m benchmarks.run` on {time.strftime('%Y-%m-%d')} on this project's build machine "
        f"({psutil.cpu_count()} cores, Python {sys.version.split()[0]}); the whole run took {seconds:.0f} s. "
        "Client, servers and PostgreSQL share the machine. See `benchmarks/run.py` for what each figure is.",
        "",
        f"## Receiver: {args.requests} callbacks, {args.concurrency} concurrent clients, uvicorn with 1 worker",
        "",
        f"Each server {bare.rounds} times, in turn; a row is the server's round of median rate, and `vs bare` the",
        "median over the rounds of its rate over the bare endpoint's in the same round.",
        "",
        "| server | requests/s | vs bare | p50 ms | p99 ms | answers |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in receiver:
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
        ratio = r.vs_bare if r.vs_bare is not None else r.throughput / bare.throughput
        lines.append(f"| {r.label} | {r.throughput:.0f} | {ratio:.2f} | {r.p50:.1f} | {r.p99:.1f} | {answers} |")
    if serial:
        lines += [
            "",
            f"## Receiver: one serial sender, {args.serial_requests} callbacks one after another (as a connector)",
            "",
            "| server | p50 ms | p99 ms | max ms | callbacks/s | answers |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in serial:
            answers = ", ".join(f"{code}: {n}" for code, n in sorted(r.statuses.items()))
            lines.append(
                f"| {r.label} | {r.p50:.2f} | {r.p99:.2f} | {max(r.latencies_ms):.2f} | "
                f"{r.throughput:.0f} | {answers} |"
            )
    lines += [
        "",
        f"## Wake-up latency: from the event's commit to the trigger's event ({args.samples} samples each)",
        "",
        "| store | triggers waiting in one process | p50 ms | p99 ms | all subscribed after s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for w in wake:
        lines.append(f"| {w.backend} | {w.waiting} | {w.p50:.1f} | {w.p99:.1f} | {w.startup_s:.1f} |")
    lines += [
        "",
        f"## The cost of waiting, over {args.idle:.0f} s",
        "",
        "| who waits | CPU s | over wall s | resident MB | database connections | requests to the connector |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in costs:
        connections = "-" if c.db_connections is None else str(c.db_connections)
        lines.append(
            f"| {c.label} | {c.cpu_s:.2f} | {c.wall_s:.0f} | {c.rss_mb:.0f} | {connections} | {c.connector_requests} |"
        )
    lines += [
        "",
        "Database connections: PostgreSQL counts the server's sessions on the store's database: the listener's",
        "connection; the triggers' start-up reads and hold renewals open a connection per use and close it",
        "when done (the writer, standing in for the receiver, has closed its own before the window).",
        "SQLite counts this process's open file descriptors on the database file: one connection (the",
        "listener's) plus the descriptors of connections already closed, which SQLite's unix VFS keeps open",
        "(and reuses) while another connection of the process holds a lock on the file, as the listener's",
        "does in WAL mode.",
        "The polling sensors are the cheapest possible poller (one asyncio loop, keep-alive connections): one",
        "round of 10,000 state requests every 30 s already keeps both cores busy here, so the round took the",
        "wall time shown instead of 30 s. Airflow's own sensors add a worker slot or a triggerer coroutine each.",
        "",
        f"## End to end in airflow standalone: transfer completed -> task success ({args.e2e_runs} runs each)",
        "",
        "| how the task waits | median s | min s | max s | median from the callback's receipt s | runs not measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    nan = float("nan")
    for e in end_to_end:
        from_callback = "-" if e.median_from_callback is None else f"{e.median_from_callback:.2f}"
        lines.append(
            f"| {e.label} | {e.median:.2f} | {min(e.latencies_s, default=nan):.2f} | "
            f"{max(e.latencies_s, default=nan):.2f} | "
            f"{from_callback} | {len(e.failed)} |"
        )
    lines += [
        "",
        "Real EDC connectors and `airflow standalone` (Airflow 3.3, LocalExecutor, SQLite, the scheduler's",
        "idle sleep at 0.2 s as in the tests); one run started every "
        f"{args.e2e_spacing:g} s; the provider's source answers after a random 0-{args.e2e_longest:g} s, so",
        "transfers end anywhere in a poll interval. Measured from the connector's `stateTimestamp` of COMPLETED",
        "to the task's `end_date`; the callback's receipt is the receiver's `received_at` of the first",
        "`TransferProcessCompleted`. The resumed task still waits for the scheduler to queue it and a worker",
        "to start it: that, not the callback, is most of its figure.",
        "",
    ]
    if durations:
        lines += [
            f"## Task duration of a short PUSH transfer, Airflow's default settings ({args.duration_runs} runs each)",
            "",
            *report_lines(durations),
            "",
            "One deferrable `EdcTransferOperator` per run, runs one after another, on the real connectors and",
            "`airflow standalone` with Airflow's own scheduler and worker timings (`[workers] min_heartbeat_interval`",
            "5 s, scheduler idle sleep 1 s). The task's duration is Airflow's (`end_date - start_date`); the",
            "transfer's own time is from its `TransferProcessInitiated` to its `TransferProcessCompleted` event",
            "on the connector's clock (the provider's transfer state machine idles "
            f"{PROVIDER_ITERATION_WAIT_MS} ms between iterations here, the demo's 1000 ms).",
            "",
        ]
    lines += [
        "![results](results.png)",
        "",
    ]
    (HERE / "results.md").write_text("\n".join(lines))


def plot(
    receiver: list[LoadResult], wake: list[WakeResult], costs: list[CostResult], end_to_end: list[EndToEndResult]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5))
    ax = axes[0]
    ax.bar([r.label for r in receiver], [r.throughput for r in receiver], color=["#999", "#4c72b0", "#55a868"])
    ax.set_title("Receiver throughput (requests/s)")
    ax.tick_params(axis="x", labelsize=8)
    ax = axes[1]
    for backend, color in (("SQLite", "#4c72b0"), ("PostgreSQL", "#55a868")):
        rows = [w for w in wake if w.backend == backend]
        ax.plot([w.waiting for w in rows], [w.p50 for w in rows], "o-", color=color, label=f"{backend} p50")
        ax.plot([w.waiting for w in rows], [w.p99 for w in rows], "s--", color=color, label=f"{backend} p99")
    ax.set_xscale("log")
    ax.set_xlabel("triggers waiting in one process")
    ax.set_ylabel("ms")
    ax.set_title("Wake-up latency (commit -> trigger event)")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.bar([c.label for c in costs], [c.connector_requests for c in costs], color="#c44e52")
    ax.set_title("Requests to the connector while waiting")
    ax.tick_params(axis="x", labelsize=7, rotation=15)
    ax = axes[3]
    ax.boxplot([e.latencies_s for e in end_to_end], showfliers=True)
    ax.set_xticks(range(1, len(end_to_end) + 1), [e.label for e in end_to_end], fontsize=7, rotation=10)
    ax.set_ylabel("s")
    ax.set_title("Transfer completed -> task success (airflow standalone)")
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="callbacks per receiver variant")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the receiver throughput comparison")
    parser.add_argument("--serial-requests", type=int, default=2000, help="callbacks of the serial sender")
    parser.add_argument("--waiting", type=int, nargs="+", default=[1, 100, 10_000], help="triggers waiting")
    parser.add_argument("--samples", type=int, default=20, help="wake-ups measured per size")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the cost-of-waiting window")
    parser.add_argument("--e2e-runs", type=int, default=20, help="DAG runs per end-to-end variant")
    parser.add_argument("--e2e-spacing", type=float, default=3.0, help="seconds between end-to-end DAG runs")
    parser.add_argument("--e2e-longest", type=float, default=25.0, help="longest random transfer, seconds")
    parser.add_argument(
        "--only", choices=["scale"], help="run only this benchmark; its section of results.md is replaced"
    )
    scale.add_arguments(parser)
    parser.add_argument("--duration-runs", type=int, default=20, help="DAG runs per task-duration variant")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    sys.path.insert(0, str(REPO))
    if args.only == "scale":
        return scale.run(args, HERE / "results.md")
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="edc-bench-airflow-"))
    os.environ["AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY"] = "benchmark-signing-key"
    from tests.postgres_server import PostgresServer

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="edc-bench-"))
    pg = PostgresServer(port=PG_PORT).start()
    try:
        receiver = receiver_benchmark(
            f"sqlite:///{workdir / 'receiver.db'}", pg.create_database(), args.requests, args.concurrency, args.rounds
        )
        serial = serial_benchmark(f"sqlite:///{workdir / 'serial.db'}", pg.create_database(), args.serial_requests)
        wake: list[WakeResult] = []
        costs: list[CostResult] = []
        sqlite_file = workdir / "triggers.db"
        with _server("connector") as connector:
            for backend, url, store_file in (
                ("SQLite", f"sqlite:///{sqlite_file}", str(sqlite_file)),
                ("PostgreSQL", pg.create_database(), None),
            ):
                results, cost = asyncio.run(
                    _waiting_triggers(backend, url, store_file, args.waiting, args.samples, args.idle, connector)
                )
                wake += results
                if cost is not None:
                    costs.append(cost)
            costs.append(polling_cost(max(args.waiting), 30.0, args.idle, connector))
            print(f"[waiting] {costs[-1]}")
    finally:
        pg.destroy()
    end_to_end = end_to_end_benchmark(args.e2e_runs, args.e2e_spacing, args.e2e_longest, workdir / "e2e")
    durations = task_duration_benchmark(args.duration_runs, workdir / "duration")
    results_md = HERE / "results.md"
    kept = saved_section(results_md.read_text()) if results_md.exists() else None  # the last scale run's
    write_report(receiver, wake, costs, end_to_end, args, time.perf_counter() - started, serial, durations)
    if kept:
        append_section(results_md, kept)
    plot(receiver, wake, costs, end_to_end)
    print(f"wrote {HERE / 'results.md'} and {HERE / 'results.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
