"""The scale benchmark's pure parts: request kinds, tree usage over a window, run spans, the connector's
answers and the results file's section (the benchmark itself runs only from benchmarks/run.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from collections import Counter

import pytest

from benchmarks.scale import PhaseResult
from benchmarks.scale_measure import (
    RunSpan,
    Sample,
    Usage,
    classify_request,
    last_completion,
    phase_usage,
    requests_by_kind,
    run_span,
    state_requests,
    transfer_processes,
    tree_usage,
)
from benchmarks.scale_report import BEGIN, END, report_section, saved_section, targets, with_section

TP = "0b7f0e58-1f5c-4c55-9f4a-0d3c5a0b1c2d"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", f"/management/v3/transferprocesses/{TP}/state", "transfer state look-up"),
        ("GET", f"/management/v4beta/transferprocesses/{TP}", "transfer look-up"),
        ("GET", f"/management/v3/transferprocesses/{TP}?x=1", "transfer look-up"),
        ("POST", "/management/v3/transferprocesses", "transfer start"),
        ("POST", "/management/v3/transferprocesses/", "transfer start"),
        ("POST", "/management/v3/transferprocesses/request", "transfer query"),
        ("POST", f"/management/v3/transferprocesses/{TP}/terminate", "transfer terminate"),
        ("GET", "/management/v3/contractnegotiations/n-1/state", "negotiation state look-up"),
        ("GET", "/management/v3/edrs/tp-1/dataaddress", "EDR look-up"),
        ("DELETE", f"/management/v3/transferprocesses/{TP}", "DELETE other"),
        ("GET", "/management/v3/assets", "GET other"),
    ],
)
def test_requests_are_classified_by_kind(method: str, path: str, kind: str) -> None:
    assert classify_request(method, path) == kind


def test_requests_are_counted_within_the_window_and_state_look_ups_apart() -> None:
    requests = [
        (1.0, "POST", "/management/v3/transferprocesses"),
        (2.0, "GET", f"/management/v3/transferprocesses/{TP}/state"),
        (3.0, "GET", f"/management/v3/transferprocesses/{TP}"),
        (4.0, "POST", "/management/v3/transferprocesses/request"),
        (9.0, "GET", f"/management/v3/transferprocesses/{TP}/state"),
    ]
    kinds = requests_by_kind(requests, 1.0, 4.0)
    assert kinds == Counter(
        {"transfer start": 1, "transfer state look-up": 1, "transfer look-up": 1, "transfer query": 1}
    )
    assert state_requests(kinds) == 2


def test_phase_usage_takes_the_cpu_used_in_the_window_and_the_peak_memory_in_it() -> None:
    mib = 2**20
    samples = [
        Sample(0.0, 10.0, 100 * mib, 50 * mib),
        Sample(5.0, 12.0, 900 * mib, 400 * mib),  # before the window: its peak does not count
        Sample(10.0, 15.0, 200 * mib, 90 * mib),
        Sample(11.0, 19.5, 300 * mib, 120 * mib),
        Sample(20.0, 25.0, 250 * mib, 100 * mib),
        Sample(30.0, 40.0, 800 * mib, 500 * mib),  # after it
    ]
    assert phase_usage(samples, 8.0, 20.0) == Usage(13.0, 300.0, 120.0)  # 25.0 - 12.0 (the last before 8 s)
    # a tree first read inside the window counts from its first reading; no negative CPU
    assert phase_usage(samples[2:], 8.0, 11.0) == Usage(4.5, 300.0, 120.0)
    dropping = [Sample(1.0, 9.0, mib, mib), Sample(2.0, 7.0, mib, mib)]
    assert phase_usage(dropping, 1.5, 3.0) == Usage(0.0, 1.0, 1.0)
    assert phase_usage(samples, 40.0, 50.0) is None


def test_a_tree_counts_the_children_of_its_process_and_alone_it_does_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        alone = tree_usage(os.getpid(), tree=False)
        tree = tree_usage(os.getpid())
        child_only = tree_usage(child.pid)
    finally:
        child.communicate(b"")
    assert alone is not None
    assert tree is not None
    assert child_only is not None
    assert tree.rss >= alone.rss + child_only.rss * 0.9  # the child's memory is in the tree, not alone
    assert tree.cpu_s >= alone.cpu_s
    assert tree_usage(child.pid) is None  # gone


def _at(second: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 12, 0, second, tzinfo=dt.timezone.utc)


def test_the_run_span_goes_from_the_first_start_to_the_last_end_of_the_mapped_task() -> None:
    rows = [
        {
            "task_id": "destinations",
            "map_index": -1,
            "state": "success",
            "start_date": _at(1),
            "end_date": _at(2),
            "try_number": 1,
        },
        {
            "task_id": "transfer",
            "map_index": 0,
            "state": "success",
            "start_date": _at(3),
            "end_date": _at(20),
            "try_number": 1,
        },
        {
            "task_id": "transfer",
            "map_index": 1,
            "state": "failed",
            "start_date": _at(3),
            "end_date": _at(30),
            "try_number": 3,
        },
        {
            "task_id": "summary",
            "map_index": -1,
            "state": "success",
            "start_date": _at(31),
            "end_date": _at(40),
            "try_number": 1,
        },
    ]
    span = run_span(rows, "transfer")
    assert span == RunSpan(_at(1).timestamp(), _at(30).timestamp(), succeeded=1, mapped=2, retried=1)
    assert span.wall_s == 29.0
    with pytest.raises(ValueError, match="no 'wait' instance ended"):
        run_span(rows, "wait")


def test_transfer_processes_are_read_whatever_form_the_connector_compacts_them_in() -> None:
    body = [
        {"@id": "a", "state": "COMPLETED", "stateTimestamp": 2000},
        {"@id": "b", "edc:state": "TERMINATED", "edc:stateTimestamp": 5000},
        {"@id": "c", "https://w3id.org/edc/v0.0.1/ns/state": "COMPLETED", "stateTimestamp": 3500},
    ]
    processes = transfer_processes(body)
    assert processes == {"a": ("COMPLETED", 2000), "b": ("TERMINATED", 5000), "c": ("COMPLETED", 3500)}
    assert transfer_processes({"@id": "x", "state": "STARTED", "stateTimestamp": 1}) == {"x": ("STARTED", 1)}
    assert last_completion(processes, ["a", "b", "c", "unknown"]) == 3.5
    assert last_completion(processes, ["a"]) == 2.0
    assert last_completion(processes, ["b"]) is None


def _result(state_requests: int, wall: float, connector: float, succeeded: int = 10) -> PhaseResult:
    span = RunSpan(100.0, 100.0 + wall, succeeded, 10, 0)
    requests = Counter({"transfer start": 10, "transfer state look-up": state_requests})
    return PhaseResult("callbacks", 10, "success", span, connector, connector + 0.5, Counter(), requests, {})


def test_the_targets_are_judged_on_the_callbacks_phase() -> None:
    assert [ok for _, ok in targets([_result(0, 15.0, 10.0)])] == [True, True, True]
    assert [ok for _, ok in targets([_result(1, 15.1, 10.0, succeeded=9)])] == [False, False, False]
    assert targets([]) == [("the callbacks phase ran", False)]


def test_the_section_replaces_the_last_one_and_survives_a_rewrite() -> None:
    args = argparse.Namespace(transfers=10, parallelism=4, source_delay=5.0, defer_after=0.0)
    usage = {"scheduler": Usage(12.5, 300.0, 200.0), "triggerer-1": None}
    result = _result(0, 12.0, 10.0)
    result.usage = usage
    section, met = report_section([result], args, 60.0)
    assert met
    assert section.startswith(BEGIN)
    assert section.rstrip().endswith(END)
    assert "| scheduler | 12.5 / 300 / 200 |" in section
    assert "| triggerer-1 | - |" in section
    text = with_section("# Benchmarks\n\nother tables\n", section)
    assert text == "# Benchmarks\n\nother tables\n\n" + section
    newer = section.replace("12.5 / 300", "13.0 / 310")
    replaced = with_section(text, newer)
    assert replaced.count(BEGIN) == 1
    assert "13.0 / 310" in replaced
    assert "12.5 / 300" not in replaced
    assert replaced.startswith("# Benchmarks\n\nother tables\n")
    assert saved_section(replaced) == newer
    assert saved_section("# Benchmarks\n") is None
