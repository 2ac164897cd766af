"""Production shape end to end: Airflow's components as separate processes on PostgreSQL (Airflow's database
and the callback store), two api-servers receiving callbacks behind a round-robin balancer, two
triggerers, 50 concurrent transfers on the real connectors, and one triggerer killed while they wait."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.config import API_SERVER_PREFIX
from airflow_edc_callbacks.store import EventStore
from demo.airflow_cluster import AirflowCluster
from tests.e2e.conftest import REPO, WORK, EdcEnvironment, consumer_connection_json
from tests.e2e.counting_proxy import CountingProxy
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.e2e

API_PORTS = (28180, 28181)
LOG_PORT_BASE = 28182  # the worker's log server; the triggerers' follow
BALANCER_PORT = 28190
DAG_ID = "example_edc_mapped_transfers"
TRANSFERS = 50
SOURCE_DELAY = 20
"""Seconds the provider's source takes to answer: transfers keep running while the triggerer is killed."""
STALL_TIMEOUT = 240
"""``[edc_callbacks] stall_timeout``: seconds a transfer may stay in one state before its task gives it up."""


@dataclass
class Cluster:
    airflow: AirflowCluster
    balancer: CountingProxy
    store_url: str


@pytest.fixture(scope="module")
def cluster(edc_env: EdcEnvironment, postgres: PostgresServer) -> Iterator[Cluster]:
    dags = WORK / "cluster-dags"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    (dags / f"{DAG_ID}.py").symlink_to(REPO / "dags" / f"{DAG_ID}.py")
    home = WORK / "cluster"
    shutil.rmtree(home, ignore_errors=True)
    store_url = postgres.create_database()
    balancer = CountingProxy(upstream=[f"http://127.0.0.1:{port}" for port in API_PORTS], port=BALANCER_PORT)
    env = {
        "AIRFLOW_CONN_EDC_DEFAULT": consumer_connection_json(),
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": store_url,
        # the connectors reach the receivers through the balancer, as through a Service in front of replicas
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"{balancer.url}{API_SERVER_PREFIX}",
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": "cluster-test-signing-key-0123456789",
        "AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL": "900",  # any state request would be a poll
        "AIRFLOW__EDC_CALLBACKS__DEFER_AFTER": "0",  # the test is about the deferred tasks' triggers
        # EDC 0.15.1's provider now and then never finishes a PUSH under this load (1 in 50 to 100 transfers
        # stays STARTED for good, nothing in its log): the task gives up on it, terminates it, and its retry
        # starts a new transfer. Healthy transfers here stay STARTED for 20 to about 100 s.
        "AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT": str(STALL_TIMEOUT),
    }
    airflow = AirflowCluster(
        home,
        dags,
        postgres.create_database(),
        API_PORTS,
        triggerers=2,
        triggerer_capacity=30,  # 50 triggers cannot all land on one triggerer
        log_port_base=LOG_PORT_BASE,
        extra_env=env,
    )
    balancer.start()
    try:
        with airflow:
            yield Cluster(airflow, balancer, store_url)
    finally:
        balancer.stop()


_STARTED = re.compile(r"Started transfer process ([0-9a-f-]{36})")
_REFUSED = re.compile(r"Task Instance not found|Failed to report terminal task state")
"""What a try's log says when the api-server refused it because the scheduler had failed it already."""


def _try_log(af: AirflowCluster, run_id: str, map_index: int, try_number: int) -> str:
    """One try's log of the mapped ``transfer`` task: through the REST API, or from the log files when
    Airflow keeps no record of that try (a try the scheduler failed as "state changed externally" may
    have none: the API answers 404)."""
    try:
        return af.task_log(DAG_ID, run_id, "transfer", try_number=try_number, map_index=map_index)
    except httpx.HTTPStatusError as err:
        if err.response.status_code != 404:
            raise
    folder = af.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=transfer" / f"map_index={map_index}"
    lines: list[str] = []
    for path in sorted(folder.glob(f"attempt={try_number}.log*")):
        for line in path.read_text().splitlines():
            try:
                lines.append(str(json.loads(line).get("event", "")))
            except (ValueError, AttributeError):
                lines.append(line)
    return "\n".join(lines)


def _triggerer_of(ti: dict[str, Any]) -> int | None:
    job = ti.get("triggerer_job") or {}
    return job.get("id")


def test_fifty_transfers_survive_a_killed_triggerer_with_callbacks_spread_over_two_receivers(
    cluster: Cluster, edc_env: EdcEnvironment
) -> None:
    af = cluster.airflow
    af.wait_for_dag(DAG_ID, deadline_s=120)
    conf = {
        "contract_id": edc_env.slow_agreement(SOURCE_DELAY),
        "counter_party_address": edc_env.connectors.provider_dsp_address,
        "sink_base_url": f"{edc_env.data_server.url}/sink",
        "count": TRANSFERS,
    }
    terminates_before = len(_terminate_calls(edc_env))
    run_id = af.trigger_dag(DAG_ID, conf=conf)

    # Wait until both triggerers run triggers and one of them holds at least five, then kill that one.
    job_ids = {t.job_id: t.name for t in af.triggerers}
    seen_on: set[int] = set()
    victim: str | None = None
    orphaned: set[int] = set()
    deadline = time.monotonic() + 300
    while victim is None:
        assert time.monotonic() < deadline, f"triggers never spread over both triggerers: {af.log_tail()}"
        tis = [t for t in af.task_instances(DAG_ID, run_id) if t["task_id"] == "transfer"]
        deferred: dict[int, set[int]] = {}
        for ti in tis:
            job = _triggerer_of(ti)
            if ti["state"] == "deferred" and job is not None:
                deferred.setdefault(job, set()).add(ti["map_index"])
        seen_on |= set(deferred)
        busiest = max(deferred, key=lambda job: len(deferred[job]), default=None)
        if seen_on >= set(job_ids) and busiest is not None and len(deferred[busiest]) >= 5:
            victim, orphaned = job_ids[busiest], deferred[busiest]
        else:
            time.sleep(0.5)
    af.kill(victim)
    killed_at = time.monotonic()
    killed_at_ms = time.time() * 1000

    try:
        state = af.wait_for_run(DAG_ID, run_id, deadline_s=600)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n{_unfinished(cluster, edc_env, run_id)}") from None
    assert state == "success", _unfinished(cluster, edc_env, run_id)
    finished_in = time.monotonic() - killed_at

    tis = [t for t in af.task_instances(DAG_ID, run_id) if t["task_id"] == "transfer"]
    tis.sort(key=lambda t: int(t["map_index"]))
    assert [t["map_index"] for t in tis] == list(range(TRANSFERS))
    assert {t["state"] for t in tis} == {"success"}

    results = [af.xcom(DAG_ID, run_id, "transfer", map_index=i) for i in range(TRANSFERS)]
    transfer_ids = [r["transfer_process_id"] for r in results]
    assert len(set(transfer_ids)) == TRANSFERS
    assert {(r["state"], r["source"]) for r in results} == {("COMPLETED", "callback")}
    assert af.xcom(DAG_ID, run_id, "summary") == {"COMPLETED": TRANSFERS, "via callback": TRANSFERS}

    # Each task resumed once in the try Airflow let succeed: one "is COMPLETED" line in its log, also for the
    # orphaned ones, and no transfer doubled. A try before it may only have failed
    # - on EDC 0.15.1's own termination of a transfer (see ATTEMPTS): the retry starts a new transfer;
    # - on the stall time-out (see STALL_TIMEOUT): its transfer was terminated, the retry starts a new one;
    # - by Airflow after its trigger fired (the scheduler handled the worker's exit report after defer() only
    #   once the resumed task was queued: "task state changed externally", apache/airflow#66374, seen on a
    #   loaded machine): its transfer COMPLETED, and the retry takes that transfer's result, no second one.
    #   When that try's resume ran before the scheduler failed it, it logged the result and the api-server
    #   refused its success ("Task Instance not found"): Airflow's double run, not a second event;
    # - by Airflow before it started any transfer.
    retried = 0
    stalled: list[str] = []
    for ti, transfer_id in zip(tis, transfer_ids, strict=True):
        i = ti["map_index"]
        for try_number in range(1, ti["try_number"]):
            log = _try_log(af, run_id, i, try_number)
            started = _STARTED.findall(log)
            if " is COMPLETED" in log:
                assert _REFUSED.search(log), f"map_index {i} try {try_number} resumed:\n{log[-3000:]}"
                assert started == [transfer_id], f"map_index {i} try {try_number}:\n{log[-3000:]}"
                assert log.count(" is COMPLETED") == 1, log[-3000:]
            elif "no change from STARTED for" in log:
                assert len(started) == 1, log[-3000:]
                assert started != [transfer_id], log[-3000:]
                assert f"{started[0]} on " in log, log[-3000:]
                assert "terminate requested on the connector" in log, log[-3000:]
                stalled.extend(started)
            elif "ended TERMINATED" in log:
                assert transfer_id not in started
                retried += 1
            else:
                assert started in ([], [transfer_id]), (
                    f"map_index {i} try {try_number} failed otherwise:\n{log[-3000:]}"
                )
        log = _try_log(af, run_id, i, ti["try_number"])
        resumed = re.findall(rf"Transfer process {transfer_id} is COMPLETED", log)
        assert len(resumed) == 1, f"map_index {i} (orphaned: {i in orphaned}) resumed {len(resumed)} times"
        earlier = [t for n in range(1, ti["try_number"]) for t in _STARTED.findall(_try_log(af, run_id, i, n))]
        if transfer_id in earlier:  # taken over from the try Airflow failed, never started twice
            assert f"Taking the result of transfer process {transfer_id}" in log, log[-3000:]
            assert transfer_id not in _STARTED.findall(log)
    assert retried <= 3, f"{retried} transfers ended TERMINATED by the connectors: more than their race explains"
    assert len(stalled) <= 3, f"{len(stalled)} transfers stalled: more than the provider's rare stall explains"

    # Each event stored once: every envelope the receivers accepted is one row, whichever receiver took it
    # and however often it came. (The connectors may send a state twice under two envelope ids: EDC 0.15.1
    # sends TransferProcessCompleted twice, and under this load now and then TransferProcessStarted too;
    # those are two events.)
    store = EventStore(cluster.store_url)  # this test's alone: also the events of transfers retried away from
    try:
        stored = store.events()
    finally:
        store.dispose()
    stored_ids = [e.envelope_id for e in stored]
    assert len(set(stored_ids)) == len(stored_ids)
    accepted: dict[str, set[str]] = {}
    for url, got in cluster.balancer.forwarded.items():
        accepted[url] = {json.loads(body)["id"] for _, body, status in got if status in (200, 204)}
        assert {status for *_, status in got} <= {200, 204}, f"{url} refused callbacks"
        assert len(accepted[url]) >= TRANSFERS, f"callbacks not spread: {url} took {len(accepted[url])}"
    assert set(stored_ids) == set().union(*accepted.values())  # every accepted envelope is stored, nothing else
    events = [e for e in stored if e.process_id in set(transfer_ids)]
    for kind in ("TransferProcessStarted", "TransferProcessCompleted"):
        assert {e.process_id for e in events if e.event_type == kind} == set(transfer_ids), kind
    answered = {url: len(ids) for url, ids in accepted.items()}

    # The killed triggerer's triggers were still waiting: completions of their transfers came after the kill
    # (a trigger holds an event until its task's worker has exited, so one may have come just before it).
    completed_at = {e.process_id: e.received_at for e in reversed(events) if e.event_type == "TransferProcessCompleted"}
    late = [i for i in orphaned if completed_at[transfer_ids[i]] > killed_at_ms]
    assert late, f"every transfer of {victim} had completed before it was killed"

    # The connector was never asked about these transfers while callbacks flowed.
    assert [r for tid in transfer_ids for r in edc_env.proxy.requests_for(tid)] == []
    # A killed triggerer's triggers moved on (no on_kill): no transfer was terminated, not one terminate
    # call reached the consumer's Management API, but for the transfers that stalled (one call each).
    terminated = [_UUID.search(path) for *_, path in _terminate_calls(edc_env)[terminates_before:]]
    assert sorted(m.group(0) for m in terminated if m) == sorted(stalled)
    assert len(terminated) == len(stalled)
    print(
        f"\n{TRANSFERS} transfers: killed {victim} holding {len(orphaned)} waiting triggers "
        f"({len(late)} of them completed after the kill); "
        f"run finished {finished_in:.1f} s later; callbacks per receiver {answered}; {retried} retried; "
        f"{len(stalled)} stalled"
    )


def _terminate_calls(edc_env: EdcEnvironment) -> list[tuple[float, str, str]]:
    """Every ``POST .../terminate`` that reached the consumer's Management API (through the counting proxy)."""
    return [r for r in edc_env.proxy.requests_for("/terminate") if r[1] == "POST" and r[2].endswith("/terminate")]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _unfinished(cluster: Cluster, edc_env: EdcEnvironment, run_id: str) -> str:
    """What each unfinished transfer task was waiting for: its log, the transfer's state on the consumer,
    its stored events, the callbacks the balancer forwarded for it and the triggerers' lines about it."""
    af = cluster.airflow
    out: list[str] = []
    for ti in af.task_instances(DAG_ID, run_id):
        if ti["task_id"] != "transfer" or ti["state"] == "success":
            continue
        i, tries = ti["map_index"], ti["try_number"]
        try:
            log = af.task_log(DAG_ID, run_id, "transfer", try_number=tries, map_index=i)
        except Exception as e:  # diagnostics only
            log = repr(e)
        out.append(f"=== map_index {i} try {tries} state {ti['state']} triggerer {_triggerer_of(ti)}\n{log[-2500:]}")
        store = EventStore(cluster.store_url)
        try:
            for tid in dict.fromkeys(_UUID.findall(log)):
                try:
                    state = edc_env.consumer_state(tid)
                except Exception as e:  # not a transfer id, or the connector is gone
                    state = repr(e)
                events = [(e.event_type, e.routes, e.received_at) for e in store.events(process_id=tid)]
                callbacks = [
                    (url, status)
                    for url, got in cluster.balancer.forwarded.items()
                    for _, body, status in got
                    if tid.encode() in body
                ]
                trigger_lines = [
                    line
                    for t in af.triggerers
                    for line in t.log_path.read_text(errors="replace").splitlines()
                    if tid in line
                ]
                out.append(
                    f"--- {tid}: consumer state {state}; stored {events}; forwarded {callbacks}\n"
                    + "\n".join(trigger_lines[-20:])
                )
        finally:
            store.dispose()
    out.append(f"balancer failures: {cluster.balancer.failures}")
    return "\n".join(out)
