"""``python -m benchmarks.serial``: callback latency for a serial sender, receiver against a bare endpoint.

An EDC connector sends its callbacks from one thread, one after the other (its event dispatcher is serial
per runtime): what limits a busy connector is the latency of a single callback, not the receiver's
throughput under concurrency. One client here POSTs ``--requests`` callbacks one after another on one
keep-alive connection (after 200 warm-up callbacks) to each server of the receiver benchmark, each on
uvicorn with one worker in its own process: the bare FastAPI endpoint answering 204 (the floor), the
receiver storing every event durably on SQLite and on PostgreSQL (a throwaway cluster of Debian's package,
tests/postgres_server.py). It prints p50 / p99 / max per server; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.load import REPO, LoadResult, envelope, receiver_variants, server

DEFAULT_PG_PORT = 25440


def serial_load(base: str, label: str, requests: int) -> LoadResult:
    """POST ``requests`` callbacks to ``base`` one after another from one synchronous client."""
    from airflow_edc_callbacks.tokens import make_token
    from benchmarks.servers import SIGNING_KEY

    url = f"{base}/callbacks/{make_token(SIGNING_KEY, 'benchmark-serial')}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        for i in range(200):  # warm-up: the connection, caches, the store's first writes
            client.post(url, json=envelope(f"warm-{i}"))
        started = time.perf_counter()
        for i in range(requests):
            body = envelope(f"tp-serial-{i}")
            start = time.perf_counter()
            response = client.post(url, json=body)
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        seconds = time.perf_counter() - started
    return LoadResult(label, requests, seconds, latencies, statuses)


def serial_benchmark(sqlite_url: str, pg_url: str, requests: int) -> list[LoadResult]:
    """The serial sender against each server of :func:`~benchmarks.load.receiver_variants`, in turn."""
    results = []
    for label, args in receiver_variants(sqlite_url, pg_url):
        with server(*args) as base:
            result = serial_load(base, label, requests)
        print(
            f"[serial sender] {label}: p50 {result.p50:.2f} ms, p99 {result.p99:.2f} ms, "
            f"max {max(result.latencies_ms):.2f} ms, {result.throughput:.0f} callbacks/s, answers {result.statuses}"
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serial", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="callbacks per server")
    parser.add_argument("--pg-port", type=int, default=DEFAULT_PG_PORT, help="port of the throwaway PostgreSQL")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="edc-bench-airflow-"))
    from tests.postgres_server import PostgresServer

    workdir = Path(tempfile.mkdtemp(prefix="edc-bench-serial-"))
    pg = PostgresServer(port=args.pg_port).start()
    try:
        results = serial_benchmark(f"sqlite:///{workdir / 'serial.db'}", pg.create_database(), args.requests)
    finally:
        pg.destroy()
    bare = results[0]
    print("\nserver | p50 ms | p99 ms | max ms | p50 vs bare | p99 vs bare")
    for r in results:
        print(
            f"{r.label} | {r.p50:.2f} | {r.p99:.2f} | {max(r.latencies_ms):.2f} | "
            f"{r.p50 / bare.p50:.1f}x | {r.p99 / bare.p99:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
