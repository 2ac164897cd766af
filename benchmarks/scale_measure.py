"""Measurements of the scale benchmark (``benchmarks/scale.py``): what a process tree costs, what the
connector was asked, and the spans of a DAG run, from the records Airflow and the connector keep.

The functions here are pure (tested in ``tests/unit/project/test_benchmark_scale.py``) except
:func:`tree_usage` and :class:`Sampler`, which read ``/proc`` through psutil.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from airflow_edc_callbacks.models.jsonld import as_list, normalize_jsonld

# -- requests to the connector's Management API ------------------------------------------------------
_ID = r"[^/?]+"
_KINDS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (kind, method, re.compile(pattern))
    for kind, method, pattern in (
        ("transfer state look-up", "GET", rf"/transferprocesses/{_ID}/state$"),
        ("transfer look-up", "GET", rf"/transferprocesses/(?!request$){_ID}$"),
        ("transfer query", "POST", r"/transferprocesses/request$"),
        ("transfer start", "POST", r"/transferprocesses$"),
        ("transfer terminate", "POST", rf"/transferprocesses/{_ID}/terminate$"),
        ("negotiation state look-up", "GET", rf"/contractnegotiations/{_ID}/state$"),
        ("negotiation look-up", "GET", rf"/contractnegotiations/(?!request$){_ID}$"),
        ("EDR look-up", "GET", rf"/edrs/{_ID}/dataaddress$"),
    )
)
STATE_KINDS = frozenset(
    {"transfer state look-up", "transfer look-up", "negotiation state look-up", "negotiation look-up"}
)
"""The kinds that ask the connector for a process's state: what a poller sends and callbacks make needless."""


def classify_request(method: str, path: str) -> str:
    """The kind of a Management API request, e.g. ``"transfer state look-up"`` for
    ``GET /management/v3/transferprocesses/<id>/state``; anything else is ``"<METHOD> other"``.

    The query string is ignored; any API version prefix (``/v3``, ``/v4beta``) matches.
    """
    path = path.split("?", 1)[0].rstrip("/")
    for kind, kind_method, pattern in _KINDS:
        if method.upper() == kind_method and pattern.search(path):
            return kind
    return f"{method.upper()} other"


def requests_by_kind(requests: Iterable[tuple[float, str, str]], start: float, end: float) -> Counter[str]:
    """Count ``(time, method, path)`` records (a :class:`tests.e2e.counting_proxy.CountingProxy`'s
    ``requests``, monotonic seconds) with ``start <= time <= end`` by :func:`classify_request`."""
    return Counter(classify_request(method, path) for t, method, path in requests if start <= t <= end)


def state_requests(kinds: Mapping[str, int]) -> int:
    """How many of the counted requests asked for a process's state (:data:`STATE_KINDS`)."""
    return sum(n for kind, n in kinds.items() if kind in STATE_KINDS)


# -- CPU and memory of process trees -------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One reading of a process tree at ``t`` (monotonic s): CPU-seconds so far (user + system of every
    live process, each with its reaped children's), resident and proportional memory summed (bytes)."""

    t: float
    cpu_s: float
    rss: int
    pss: int


@dataclass(frozen=True)
class Usage:
    """A tree's cost over a window: CPU-seconds used, peak summed RSS and PSS in MiB."""

    cpu_s: float
    peak_rss_mb: float
    peak_pss_mb: float


def phase_usage(samples: Sequence[Sample], start: float, end: float) -> Usage | None:
    """The cost of a tree between ``start`` and ``end`` (monotonic s) from its samples (in time order).

    CPU: the last reading at or before ``end`` minus the last one at or before ``start`` (the first one
    after ``start`` when the tree started later), never below 0 (a child that exited and was not yet
    reaped drops out of a reading). Peaks: the highest reading within the window. ``None`` when no
    sample falls in the window.
    """
    inside = [s for s in samples if start <= s.t <= end]
    if not inside:
        return None
    before = [s for s in samples if s.t <= start]
    first = before[-1] if before else inside[0]
    last = inside[-1]
    return Usage(
        max(0.0, last.cpu_s - first.cpu_s),
        max(s.rss for s in inside) / 2**20,
        max(s.pss for s in inside) / 2**20,
    )


def tree_usage(pid: int, at: float | None = None, *, tree: bool = True) -> Sample | None:
    """Read the tree of ``pid`` (it and all its descendants) now; ``None`` if ``pid`` is gone.

    A descendant reparented away from the tree (a daemon) is no longer counted. RSS counts pages shared
    by forked processes once per process; PSS shares them out (``/proc/<pid>/smaps_rollup``). With
    ``tree=False`` only the process itself counts, without its children (live or reaped).
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if tree else [root]
    except psutil.Error:
        return None
    cpu = 0.0
    rss = pss = 0
    for proc in procs:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                if tree:
                    cpu += times.children_user + times.children_system
                memory = proc.memory_full_info()
                rss += memory.rss
                pss += getattr(memory, "pss", memory.rss)
        except psutil.Error:  # exited between the listing and the reading
            continue
    return Sample(time.monotonic() if at is None else at, cpu, rss, pss)


@dataclass
class Sampler:
    """Reads each named process tree every ``interval_s`` in a daemon thread, until :meth:`stop`; the
    processes named in ``alone`` without their children (this process: its children are measured apart)."""

    roots: Mapping[str, int]
    interval_s: float = 1.0
    alone: frozenset[str] = frozenset()
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def sample_now(self) -> float:
        """Read every tree once (also between the periodic readings); return the time of the reading."""
        now = time.monotonic()
        readings = {name: tree_usage(pid, now, tree=name not in self.alone) for name, pid in self.roots.items()}
        with self._lock:
            for name, reading in readings.items():
                if reading is not None:
                    self.samples.setdefault(name, []).append(reading)
        return now

    def start(self) -> Sampler:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample_now()

        self.sample_now()
        self._thread = threading.Thread(target=loop, name="scale-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def usage(self, start: float, end: float) -> dict[str, Usage | None]:
        """:func:`phase_usage` of every tree over ``[start, end]``."""
        with self._lock:
            return {name: phase_usage(self.samples.get(name, []), start, end) for name in self.roots}


# -- spans of a run -----------------------------------------------------------------------------------
def epoch_s(value: dt.datetime | str | None) -> float | None:
    """Epoch seconds of an aware datetime or an ISO-8601 string (``Z`` allowed); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


@dataclass(frozen=True)
class RunSpan:
    """From Airflow's task instance records of one DAG run: the first start of any task, the last end of
    the waiting (mapped) task's instances (epoch s), how many of them succeeded and how many there are,
    and how many instances of any task ran more than one try."""

    first_start: float
    last_end: float
    succeeded: int
    mapped: int
    retried: int

    @property
    def wall_s(self) -> float:
        return self.last_end - self.first_start


def run_span(rows: Iterable[Mapping[str, Any]], waiting_task: str) -> RunSpan:
    """Rows of ``task_instance`` (``task_id``, ``map_index``, ``state``, ``start_date``, ``end_date``,
    ``try_number``) of one run → :class:`RunSpan` of ``waiting_task``'s mapped instances.

    :raises ValueError: no task started, or ``waiting_task`` has no mapped instance that ended.
    """
    rows = list(rows)
    starts = [s for r in rows if (s := epoch_s(r["start_date"])) is not None]
    mapped = [r for r in rows if r["task_id"] == waiting_task and int(r["map_index"]) >= 0]
    ends = [e for r in mapped if (e := epoch_s(r["end_date"])) is not None]
    if not starts or not ends:
        raise ValueError(f"no task started, or no {waiting_task!r} instance ended: {rows[:5]}")
    return RunSpan(
        min(starts),
        max(ends),
        sum(1 for r in mapped if r["state"] == "success"),
        len(mapped),
        sum(1 for r in rows if int(r["try_number"] or 0) > 1),
    )


def transfer_processes(body: Any) -> dict[str, tuple[str, int]]:
    """A ``POST /v3/transferprocesses/request`` answer (a JSON-LD array, compacted or not) →
    ``{id: (state, stateTimestamp in epoch ms)}``."""
    found: dict[str, tuple[str, int]] = {}
    for raw in as_list(body):
        process = normalize_jsonld(raw)
        if isinstance(process, dict) and "@id" in process:
            found[str(process["@id"])] = (str(process.get("state", "")), int(process.get("stateTimestamp") or 0))
    return found


def last_completion(processes: Mapping[str, tuple[str, int]], ids: Iterable[str]) -> float | None:
    """Epoch seconds of the latest COMPLETED ``stateTimestamp`` among ``ids``; ``None`` if none completed."""
    stamps = [processes[i][1] for i in ids if i in processes and processes[i][0] == "COMPLETED"]
    return max(stamps) / 1000 if stamps else None
