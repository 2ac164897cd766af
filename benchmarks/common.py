"""Helpers the benchmarks share: percentiles and free ports."""

from __future__ import annotations

import socket


def percentile(values: list[float], q: float) -> float:
    """The value at rank ``round(q / 100 * (n - 1))`` of the sorted ``values`` (q in 0-100); ``nan`` if empty.

    For p50 of an even count this is one of the two middle values, not their mean.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class Latencies:
    """p50/p99 of ``latencies_ms``."""

    latencies_ms: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
