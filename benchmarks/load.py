"""The receiver benchmarks' load: the servers compared, run one at a time in a process of their own, and a
client POSTing callbacks to them (``benchmarks/servers.py`` holds the servers themselves)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Latencies, free_port

REPO = Path(__file__).resolve().parent.parent


def receiver_variants(sqlite_url: str, pg_url: str) -> list[tuple[str, tuple[str, ...]]]:
    """The servers compared, as ``(label, arguments of python -m benchmarks.servers)``: the bare endpoint
    (the floor), the receiver on SQLite and on PostgreSQL."""
    return [
        ("bare FastAPI, 204", ("bare",)),
        ("receiver, SQLite", ("receiver", "--store-url", sqlite_url)),
        ("receiver, PostgreSQL", ("receiver", "--store-url", pg_url)),
    ]


def envelope(process_id: str) -> dict[str, Any]:
    """A ``TransferProcessCompleted`` envelope for ``process_id``, as a connector POSTs it."""
    return {
        "id": str(uuid.uuid4()),
        "at": int(time.time() * 1000),
        "type": "TransferProcessCompleted",
        "payload": {"transferProcessId": process_id, "type": "CONSUMER", "assetId": "demo-asset"},
    }


@dataclass
class LoadResult(Latencies):
    """One load run against one server: how many requests, how long, each latency and each answer."""

    label: str
    requests: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[int, int]
    vs_bare: float | None = None
    """The median, over the rounds, of this server's rate over the bare endpoint's in the same round."""
    rounds: int = 1

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


@contextmanager
def server(*args: str) -> Iterator[str]:
    """Run ``python -m benchmarks.servers ARGS`` on a free port until the block ends; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers", *args, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {args} did not start") from None
            time.sleep(0.1)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def load(base: str, label: str, requests: int, concurrency: int) -> LoadResult:
    """POST ``requests`` callbacks to ``base`` from ``concurrency`` clients, each one after another on its
    keep-alive connection (after 200 warm-up callbacks); ``concurrency=1`` is a serial sender, as an EDC
    connector's dispatcher is."""
    from airflow_edc_callbacks.tokens import make_token
    from benchmarks.servers import SIGNING_KEY

    url = f"{base}/callbacks/{make_token(SIGNING_KEY, 'benchmark')}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for i in range(200):  # warm-up: connections, caches, the store's first writes
            await client.post(url, json=envelope(f"warm-{i}"))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = envelope(f"tp-{i}")
                start = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append((time.perf_counter() - start) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return LoadResult(label, requests, seconds, latencies, statuses)
