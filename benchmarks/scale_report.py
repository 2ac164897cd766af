"""The scale benchmark's section of ``benchmarks/results.md``: tables, targets, and keeping the section
when the other benchmarks rewrite the file."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from benchmarks.scale import PhaseResult

BEGIN = "<!-- scale benchmark: begin -->"
END = "<!-- scale benchmark: end -->"
MAX_RATIO = 1.5
"""Target: the callbacks phase's wall time at most this many times the connector-side completion."""


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def targets(results: Sequence[PhaseResult]) -> list[tuple[str, bool]]:
    """The issue's targets, judged on the callbacks phase (the first result): ``(what, met)``."""
    if not results:
        return [("the callbacks phase ran", False)]
    r = results[0]
    succeeded = r.span.succeeded if r.span else 0
    ratio = r.ratio
    return [
        (
            f"all {r.transfers} transfers succeed ({succeeded} did, run {r.run_state})",
            r.run_state == "success" and succeeded == r.transfers,
        ),
        (f"no state request to the connector while callbacks flow ({r.state_requests})", r.state_requests == 0),
        (
            f"wall time within {MAX_RATIO:g}x of the connector-side completion of the last transfer ({_f(ratio, 2)}x)",
            ratio is not None and ratio <= MAX_RATIO,
        ),
    ]


def report_section(results: Sequence[PhaseResult], args: argparse.Namespace, seconds: float) -> tuple[str, bool]:
    """Markdown of one run (between :data:`BEGIN` and :data:`END`) and whether every target was met."""
    n = args.transfers
    lines = [
        BEGIN,
        f"## {n} concurrent mapped transfers: callbacks against polling sensors",
        "",
        f"Measured by `python -m benchmarks.run --only scale --transfers {n}` on {time.strftime('%Y-%m-%d')} "
        f"({psutil.cpu_count()} cores, Python {sys.version.split()[0]}); the whole run took {seconds:.0f} s. "
        "Airflow as separate processes on PostgreSQL (metadata database and event store): scheduler with the "
        f"LocalExecutor ({args.parallelism} task processes), dag-processor, two triggerers, two api-servers "
        "receiving the callbacks behind a round-robin balancer; the demo EDC connectors, the provider's "
        f"source answering after {args.source_delay:g} s; `defer_after` {args.defer_after:g} s. "
        "See `benchmarks/scale.py` for what each figure is.",
        "",
        "| how the tasks wait | succeeded | run | wall s | connector's last COMPLETED s | wall / connector "
        "| last callback stored s | state requests | all requests | tasks retried |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        succeeded = f"{r.span.succeeded}/{r.transfers}" if r.span else f"0/{r.transfers}"
        lines.append(
            f"| {r.label} | {succeeded} | {r.run_state} | {_f(r.span.wall_s if r.span else None)} | "
            f"{_f(r.connector_last_s)} | {_f(r.ratio, 2)} | {_f(r.callback_last_s)} | {r.state_requests} | "
            f"{sum(r.requests.values())} | {r.span.retried if r.span else '-'} |"
        )
    lines += [
        "",
        "Seconds from the first task's start in the run (Airflow's `task_instance.start_date`): wall = to the "
        "last mapped task's end; connector = to the consumer's `stateTimestamp` of its last COMPLETED "
        "transfer; callback = to the receiver's `received_at` of the last `TransferProcessCompleted`. "
        "Requests: to the consumer's Management API through the counting proxy during the phase; state "
        "requests are look-ups of a process or its state.",
        "",
        "| requests by kind | " + " | ".join(r.label for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    kinds = sorted({k for r in results for k in r.requests})
    lines += [f"| {k} | " + " | ".join(str(r.requests.get(k, 0)) for r in results) + " |" for k in kinds]
    lines += [
        "",
        "| component: CPU s / peak RSS MB / peak PSS MB | " + " | ".join(r.label for r in results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    names = list(dict.fromkeys(name for r in results for name in r.usage))
    for name in names:
        cells = []
        for r in results:
            u = r.usage.get(name)
            cells.append("-" if u is None else f"{u.cpu_s:.1f} / {u.peak_rss_mb:.0f} / {u.peak_pss_mb:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Each component is its process tree (the process and its descendants: the scheduler's task "
        "processes are its children), read every second with psutil. CPU: user + system seconds during "
        "the phase. RSS is summed over the tree's processes (pages shared by forked processes count once "
        "per process); PSS shares them out.",
    ]
    if results and results[0].callbacks_per_receiver:
        spread = ", ".join(f"{url}: {n}" for url, n in results[0].callbacks_per_receiver.items())
        lines += ["", f"Callbacks forwarded to each api-server in the callbacks phase: {spread}."]
    met = targets(results)
    lines += ["", "Targets (callbacks phase):", ""]
    lines += [f"- {'met' if ok else 'NOT met'}: {what}" for what, ok in met]
    lines += [END, ""]
    return "\n".join(lines), all(ok for _, ok in met)


def saved_section(text: str) -> str | None:
    """The scale section in a results file's ``text`` (markers included), or ``None``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start : end + len(END)] + "\n"


def with_section(text: str, section: str) -> str:
    """``text`` with its scale section replaced by ``section``, or ``section`` appended after a blank line."""
    old = saved_section(text)
    if old is not None:
        return text.replace(old.rstrip("\n"), section.rstrip("\n"), 1)
    return text.rstrip("\n") + "\n\n" + section


def append_section(path: Path, section: str) -> None:
    """Write ``section`` into the results file at ``path`` (see :func:`with_section`)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(with_section(text, section))
