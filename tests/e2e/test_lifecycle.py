"""Transfer lifecycle as users meet it, on `airflow standalone` and the real consumer connector: a transfer
whose provider never answers times out naming it and is terminated; a transfer that stays STARTED past the
task's stall time-out fails the task early and is terminated; a deferred transfer task marked failed
by a user terminates its transfer (Airflow 3.3 calls the trigger's ``on_kill``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from tests.e2e.conftest import ATTEMPTS, EdcEnvironment, airflow_under_test
from tests.e2e.silent_provider import SilentProvider
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e

SILENT_PROVIDER_PORT = 28071
TIMEOUT_DAG = "example_edc_transfer_timeout"
TIMEOUT_TASK = "transfer_with_timeout"
PUSH_DAG = "example_edc_push_transfer"
PUSH_TASK = "push_transfer"
STALL_DAG = "example_edc_transfer_stall"
STALL_TASK = "transfer_with_stall_timeout"
STALL_TIMEOUT = 30
"""The stall example's ``stall_timeout``: its transfer of the slow asset stays STARTED longer."""
SLOW_SOURCE_SECONDS = 180
"""The PUSH test's source answers after this long: its transfer stays STARTED while the test acts."""

_STARTED = re.compile(r"(?:Started transfer process|Waiting for transfer process) ([0-9a-f-]{36})")


@pytest.fixture(scope="module")
def silent_provider() -> Iterator[SilentProvider]:
    provider = SilentProvider(SILENT_PROVIDER_PORT).start()
    try:
        yield provider
    finally:
        provider.stop()


def terminate_calls(env: EdcEnvironment, process_id: str) -> list[tuple[float, str, str]]:
    """``POST .../{id}/terminate`` requests that reached the consumer's Management API for ``process_id``."""
    return [r for r in env.proxy.requests_for(process_id) if r[1] == "POST" and r[2].endswith("/terminate")]


def watch_states(
    af: AirflowStandalone, dag_id: str, run_id: str, task_id: str, timeout: float
) -> list[tuple[str, float]]:
    """Poll the task instance every 100 ms until it is final: the states seen with the monotonic time each
    was first seen."""
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = af.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        state = (r.json().get("state") if r.status_code == 200 else None) or "none"
        if not seen or seen[-1][0] != state:
            seen.append((state, time.monotonic()))
        if state in {"success", "failed", "upstream_failed", "skipped"}:
            return seen
        time.sleep(0.1)
    raise TimeoutError(f"{dag_id}/{run_id}/{task_id}: states seen {seen}")


def test_a_transfer_whose_provider_never_answers_times_out_naming_it_and_is_terminated(
    edc_env: EdcEnvironment, airflow: AirflowStandalone, silent_provider: SilentProvider
) -> None:
    """The consumer connector is the real one; the provider is SIMULATED (tests/e2e/silent_provider.py): it
    acknowledges the transfer request and never sends anything after, as a provider without a data plane
    for the transfer type whose termination message was lost. The consumer stays REQUESTED; the task's
    60 s time-out ends the wait, names the transfer and its last state, and terminates it."""
    airflow.wait_for_dag(TIMEOUT_DAG)
    run_id = airflow.trigger_dag(
        TIMEOUT_DAG,
        conf={
            "contract_id": edc_env.agreements[edc.DEMO_ASSET],
            "counter_party_address": silent_provider.dsp_address,
            "sink_base_url": f"{edc_env.data_server.url}/sink",
        },
    )
    seen = watch_states(airflow, TIMEOUT_DAG, run_id, TIMEOUT_TASK, timeout=180)
    states = [s for s, _ in seen]
    assert "deferred" in states, seen
    assert states[-1] == "failed", seen
    began = next(t for s, t in seen if s in ("running", "deferred"))
    took = seen[-1][1] - began
    assert took <= 70, f"the task failed {took:.1f} s after it started (timeout 60 s): {seen}"

    log = airflow.task_log(TIMEOUT_DAG, run_id, TIMEOUT_TASK, try_number=1)
    match = _STARTED.search(log)
    assert match, log[-3000:]
    transfer_id = match.group(1)
    # the typed error names the transfer, the connector, its last state and the wait
    pattern = (
        rf"EDC transfer process {transfer_id} on {re.escape(edc_env.proxied_management_url)} "
        rf"timed out after (\d+) s in state REQUESTED; terminate requested on the connector"
    )
    found = re.search(pattern, log)
    assert found, log[-4000:]
    assert "EdcTransferTimeout" in log
    assert 59 <= int(found.group(1)) <= 70
    # the silent provider took the request and never answered after it: the consumer was REQUESTED
    assert ("POST", "/protocol/2025-1/transfers/request") in silent_provider.requests

    # the task terminated the transfer on the consumer connector (one call), which ended it
    assert len(terminate_calls(edc_env, transfer_id)) == 1
    assert wait_until(lambda: edc_env.consumer_state(transfer_id) == "TERMINATED", 30, "the transfer's TERMINATED")
    assert any(path.endswith("/termination") for _, path in silent_provider.requests)
    print(f"\ntime-out: the task failed {took:.1f} s after it started (timeout 60 s)")


def test_a_transfer_that_stays_started_past_its_stall_timeout_fails_early_and_is_terminated(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    """Real connectors: the provider's source answers after 180 s, so the PUSH stays STARTED and no callback
    comes, as with a provider data plane that never finishes. The task's 30 s ``stall_timeout`` ends the wait
    (its ``timeout`` is 6 h) after one state check, names the transfer and its state, and terminates it."""
    airflow.wait_for_dag(STALL_DAG)
    conf = {
        "contract_id": edc_env.slow_agreement(SLOW_SOURCE_SECONDS),
        "counter_party_address": edc_env.connectors.provider_dsp_address,
        "sink_base_url": f"{edc_env.data_server.url}/sink",
    }
    for _ in range(ATTEMPTS):  # EDC 0.15.1 may terminate a transfer by itself (see ATTEMPTS): start another
        run_id = airflow.trigger_dag(STALL_DAG, conf=conf)
        seen = watch_states(airflow, STALL_DAG, run_id, STALL_TASK, timeout=180)
        log = airflow.task_log(STALL_DAG, run_id, STALL_TASK, try_number=1)
        if "ended TERMINATED" not in log:
            break
    states = [s for s, _ in seen]
    assert states[-1] == "failed", seen
    began = next(t for s, t in seen if s in ("running", "deferred"))
    took = seen[-1][1] - began
    assert took < 120, f"the task failed {took:.1f} s after it started (stall_timeout 30 s): {seen}"

    match = _STARTED.search(log)
    assert match, log[-3000:]
    transfer_id = match.group(1)
    pattern = (
        rf"EDC transfer process {transfer_id} on {re.escape(edc_env.proxied_management_url)} "
        rf"timed out after \d+ s in state STARTED: no change from STARTED for (\d+) s "
        rf"\(stall_timeout {STALL_TIMEOUT} s\); terminate requested on the connector"
    )
    found = re.search(pattern, log)
    assert found, log[-4000:]
    assert STALL_TIMEOUT <= int(found.group(1)) < 90
    # one state check before giving up (the GET of the transfer), one terminate, and the transfer ended
    gets = [r for r in edc_env.proxy.requests_for(transfer_id) if r[1] == "GET"]
    assert len(gets) == 1, gets
    assert len(terminate_calls(edc_env, transfer_id)) == 1
    assert wait_until(lambda: edc_env.consumer_state(transfer_id) == "TERMINATED", 30, "the transfer's TERMINATED")
    print(f"\nstall: the task failed {took:.1f} s after it started (stall_timeout {STALL_TIMEOUT} s)")


def _deferred_started_transfer(env: EdcEnvironment, af: AirflowStandalone, run_id: str, deadline_s: float) -> str:
    """The id of the STARTED transfer the push task waits on, deferred, with its trigger running in the
    triggerer (its "Waiting for transfer process" line is in the task log). EDC 0.15.1 now and then terminates
    a transfer by itself (see tests/e2e/conftest.py ATTEMPTS): the task's retry then waits on a new one.

    The trigger must be running: a task marked failed before the triggerer has picked its trigger up never
    gets an ``on_kill`` (Airflow drops the trigger without running it; documented in docs/guides/timeouts.md)."""

    def probe() -> str | None:
        ti = af.task_instance(PUSH_DAG, run_id, PUSH_TASK)
        if ti["state"] != "deferred":
            return None
        log = af.task_log(PUSH_DAG, run_id, PUSH_TASK, try_number=ti["try_number"])
        ids = _STARTED.findall(log)
        if not ids or f"Waiting for transfer process {ids[-1]} to be" not in log:
            return None
        if env.consumer_state(ids[-1]) == "STARTED":
            return str(ids[-1])
        return None

    return wait_until(probe, deadline_s, "a deferred push task on a STARTED transfer", interval=0.5)


def test_marking_a_deferred_transfer_task_failed_terminates_its_transfer(
    edc_env: EdcEnvironment, airflow: AirflowStandalone
) -> None:
    """A user marks the deferred task failed (Airflow's REST API, as the UI does): Airflow 3.3 cancels its
    trigger with on_kill, which finds the task instance no longer deferred and terminates the transfer."""
    if tuple(int(p) for p in airflow_under_test().split(".")[:2]) < (3, 3):
        pytest.skip("Airflow before 3.3 never calls a trigger's on_kill")
    airflow.wait_for_dag(PUSH_DAG)
    conf: dict[str, Any] = {
        "contract_id": edc_env.slow_agreement(SLOW_SOURCE_SECONDS),
        "counter_party_address": edc_env.connectors.provider_dsp_address,
        "sink_base_url": f"{edc_env.data_server.url}/sink",
    }
    run_id = airflow.trigger_dag(PUSH_DAG, conf=conf)
    transfer_id = _deferred_started_transfer(edc_env, airflow, run_id, 60 * ATTEMPTS)
    assert terminate_calls(edc_env, transfer_id) == []

    airflow.api("PATCH", f"/dags/{PUSH_DAG}/dagRuns/{run_id}/taskInstances/{PUSH_TASK}", json={"new_state": "failed"})
    marked = time.monotonic()
    # on_kill first asks Airflow for the task instance's state; on 3.3.2 the triggerer's supervisor sets its
    # in-process Execution API up for that first request (about 12 s here idle, more on a loaded machine)
    wait_until(lambda: edc_env.consumer_state(transfer_id) == "TERMINATED", 60, "the transfer's TERMINATED")
    took = time.monotonic() - marked
    assert edc_env.consumer_state(transfer_id) == "TERMINATED"
    assert len(terminate_calls(edc_env, transfer_id)) == 1
    assert airflow.task_instance(PUSH_DAG, run_id, PUSH_TASK)["state"] == "failed"
    print(f"\nmark failed: the transfer was TERMINATED {took:.1f} s later")
