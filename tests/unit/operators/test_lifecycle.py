"""Time-outs, stalls, kills: the triggers against the real store and receiver, the operators' resume, with a
FAKE Management API (a local HTTP server answering states and terminates as EDC 0.15.1 does; the real
connectors run in tests/e2e/test_lifecycle.py)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.exceptions import (
    EdcNegotiationTimeout,
    EdcTransferFailed,
    EdcTransferTimeout,
)
from airflow_edc_callbacks.operators import EdcContractNegotiationOperator, EdcTransferOperator
from airflow_edc_callbacks.sensors import EdcTransferSensor, EdcTransferSensorTimeout
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackTrigger, EdcNegotiationTrigger
from tests.conftest import SIGNING_KEY
from tests.fake_connector import FakeConnector
from tests.helpers import envelope, first_trigger_event, wait_until

CORRELATION = "corr-lifecycle"
TP = "tp-lifecycle"
CN = "cn-lifecycle"


def post(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(f"/callbacks/{make_token(SIGNING_KEY, CORRELATION)}", json=body)
    assert response.status_code == 200, response.text


def transfer_trigger(**overrides: Any) -> EdcCallbackTrigger:
    kwargs: dict[str, Any] = {
        "correlation_id": CORRELATION,
        "transfer_process_id": TP,
        "wait_for": "completed",
        "fallback_check_interval": 3600,
    }
    kwargs.update(overrides)
    return EdcCallbackTrigger(**kwargs)


# -- time-outs decided by the trigger --------------------------------------------------------------


async def test_time_out_names_the_last_state_of_the_last_callback(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """The state check at the deadline fails (the connector answers 404): the last callback's state."""
    post(receiver, envelope("TransferProcessRequested", TP))
    started = time.time()
    trigger = transfer_trigger(deadline=started + 0.5, waiting_since=started - 30)
    payload = await first_trigger_event(trigger, 10)
    assert time.time() >= started + 0.5
    assert (payload["status"], payload["state"], payload["source"]) == ("timeout", "REQUESTED", "callback")
    assert payload["transfer_process_id"] == TP
    assert 30.5 <= payload["waited_seconds"] < 40  # counted from waiting_since (the deferral), not the restart
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessRequested"]
    assert [r[2] for r in connector.calls("GET")] == [f"/management/v3/transferprocesses/{TP}"]  # asked once


async def test_time_out_after_a_lost_terminal_callback_is_the_connectors_result(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """Requested came by callback, Completed was lost (EDC never re-delivers it): the state check at the
    deadline finds the transfer COMPLETED, so the task succeeds and nothing is terminated."""
    post(receiver, envelope("TransferProcessRequested", TP))
    connector.states[TP] = "COMPLETED"
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 0.3), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("success", "COMPLETED", "state_check")
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessRequested"]
    assert connector.calls("POST") == []


async def test_a_callback_stored_before_a_restart_past_the_deadline_still_counts(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """The triggerer restarts after the deadline and the Completed callback is in the store: it is the
    result, not a time-out."""
    post(receiver, envelope("TransferProcessCompleted", TP))
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() - 1), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("success", "COMPLETED", "callback")
    assert connector.requests == []


async def test_time_out_without_a_callback_asks_the_connector_once(
    receiver: TestClient, connector: FakeConnector
) -> None:
    connector.states[TP] = "REQUESTING"
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 0.3), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("timeout", "REQUESTING", "state_check")
    assert [r[2] for r in connector.calls("GET")] == [f"/management/v3/transferprocesses/{TP}"]


async def test_time_out_whose_state_check_finds_the_transfer_finished_is_that_result(
    receiver: TestClient, connector: FakeConnector
) -> None:
    connector.states[TP] = "COMPLETED"
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 0.2), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("success", "COMPLETED", "state_check")


async def test_time_out_when_nothing_answers_names_an_unknown_state(
    receiver: TestClient, connector: FakeConnector
) -> None:
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 0.2), 10)  # the GET answers 404
    assert (payload["status"], payload["state"], payload["source"]) == ("timeout", "UNKNOWN", None)


async def test_negotiation_time_out_names_its_last_state(receiver: TestClient, connector: FakeConnector) -> None:
    body = envelope("ContractNegotiationVerified", CN)
    body["payload"] = {"contractNegotiationId": CN, "counterPartyId": "provider"}
    post(receiver, body)
    trigger = EdcNegotiationTrigger(
        correlation_id=CORRELATION, contract_negotiation_id=CN, fallback_check_interval=3600, deadline=time.time() + 0.3
    )
    payload = await first_trigger_event(trigger, 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("timeout", "VERIFIED", "callback")
    assert payload["contract_negotiation_id"] == CN


def test_serialized_kwargs_keep_the_deadline_across_a_triggerer_restart() -> None:
    trigger = transfer_trigger(deadline=1_800_000_000.5, waiting_since=1_799_999_000.0, terminate_on_kill=True)
    _, kwargs = trigger.serialize()
    assert (kwargs["deadline"], kwargs["waiting_since"], kwargs["terminate_on_kill"]) == (
        1_800_000_000.5,
        1_799_999_000.0,
        True,
    )
    restored = EdcCallbackTrigger(**kwargs)
    assert (restored.deadline, restored.waiting_since, restored.terminate_on_kill) == (
        1_800_000_000.5,
        1_799_999_000.0,
        True,
    )
    _, negotiation_kwargs = EdcNegotiationTrigger(
        correlation_id=CORRELATION, contract_negotiation_id=CN, deadline=5.0, terminate_on_kill=True
    ).serialize()
    assert (negotiation_kwargs["deadline"], negotiation_kwargs["terminate_on_kill"]) == (5.0, True)


def timeout_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "status": "timeout",
        "transfer_process_id": TP,
        "correlation_id": CORRELATION,
        "state": "REQUESTED",
        "event_type": None,
        "reason": None,
        "source": "callback",
        "asset_id": None,
        "contract_id": None,
        "timeline": [],
        "waited_seconds": 60.2,
    }
    event.update(overrides)
    return event


def transfer_operator(**kwargs: Any) -> EdcTransferOperator:
    kwargs.setdefault("transfer_type", "HttpData-PUSH")
    kwargs.setdefault("deferrable", True)
    return EdcTransferOperator(
        task_id="transfer", contract_id="agreement-1", counter_party_address="http://provider/protocol", **kwargs
    )


def test_time_out_terminates_the_transfer_then_fails_naming_it(connector: FakeConnector) -> None:
    connector.states[TP] = "REQUESTED"
    with pytest.raises(EdcTransferTimeout) as info:
        transfer_operator().execute_complete({}, timeout_event())  # type: ignore[arg-type]
    err = info.value
    assert (err.transfer_process_id, err.connector_url, err.state, err.waited_seconds) == (
        TP,
        connector.url,
        "REQUESTED",
        60.2,
    )
    assert str(err) == (
        f"EDC transfer process {TP} on {connector.url} timed out after 60 s in state REQUESTED; "
        "terminate requested on the connector"
    )
    [(_, _, path, body)] = connector.calls("POST")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"
    assert body["@type"] == "TerminateTransfer"
    assert "timed out after 60 s in state REQUESTED" in body["reason"]


def test_time_out_without_terminate_leaves_the_transfer_alone(connector: FakeConnector) -> None:
    with pytest.raises(EdcTransferTimeout) as info:
        transfer_operator(terminate_on_timeout=False).execute_complete({}, timeout_event())  # type: ignore[arg-type]
    assert str(info.value).endswith("in state REQUESTED")
    assert connector.requests == []


def test_time_out_of_a_transfer_already_final_is_tolerated(
    connector: FakeConnector, capsys: pytest.CaptureFixture[str]
) -> None:
    """It finished between the time-out and the terminate: EDC answers 409; the state read says so."""
    connector.states[TP] = "COMPLETED"
    connector.terminate_status = 409
    with pytest.raises(EdcTransferTimeout) as info:
        transfer_operator().execute_complete({}, timeout_event())  # type: ignore[arg-type]
    assert str(info.value).endswith("; it was COMPLETED already")
    assert [r[1] for r in connector.requests] == ["POST", "GET"]
    assert "Could not terminate" not in capsys.readouterr().out


def test_negotiation_time_out_whose_terminate_is_refused_is_logged_not_raised(
    connector: FakeConnector, capsys: pytest.CaptureFixture[str]
) -> None:
    """EDC can refuse to terminate a REQUESTED negotiation (eclipse-edc/Connector#3814)."""
    connector.states[CN] = "REQUESTED"
    connector.terminate_status = 409
    op = EdcContractNegotiationOperator(
        task_id="negotiate", asset_id="asset", counter_party_address="http://p/protocol", counter_party_id="provider"
    )
    event = timeout_event(contract_negotiation_id=CN, state="REQUESTED", waited_seconds=3600.0)
    del event["transfer_process_id"]
    with pytest.raises(EdcNegotiationTimeout) as info:
        op.execute_complete({}, event)  # type: ignore[arg-type]
    assert info.value.contract_negotiation_id == CN
    assert str(info.value).startswith(
        f"EDC contract negotiation {CN} on {connector.url} timed out after 3600 s in state REQUESTED; "
        "terminating it failed"
    )
    [(_, _, path, body)] = connector.calls("POST")
    assert path == f"/management/v3/contractnegotiations/{CN}/terminate"
    assert (body["@type"], body["@id"]) == ("TerminateNegotiation", CN)
    assert f"Could not terminate contract negotiation {CN}" in capsys.readouterr().out


def test_sensor_time_out_is_typed_and_terminates_nothing(connector: FakeConnector) -> None:
    from airflow_edc_callbacks._compat import AirflowSensorTimeout

    sensor = EdcTransferSensor(task_id="wait", transfer_process_id=TP)
    with pytest.raises(EdcTransferSensorTimeout) as info:
        sensor.execute_complete({}, timeout_event())  # type: ignore[arg-type]
    assert isinstance(info.value, EdcTransferTimeout)
    assert isinstance(info.value, AirflowSensorTimeout)  # a sensor's time-out: no retries
    assert connector.requests == []


def test_operator_defers_with_a_deadline_and_a_later_safety_net(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from tests.airflow_compat import TaskDeferred

    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    op = transfer_operator(timeout=120, terminate_on_kill=False, defer_after=0)
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="transfer", map_index=-1, try_number=1)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    trigger = info.value.trigger
    assert info.value.timeout == timedelta(seconds=180)
    assert before <= trigger.waiting_since <= time.time()
    assert trigger.deadline == pytest.approx(trigger.waiting_since + 120)
    assert trigger.terminate_on_kill is False
    assert transfer_operator().terminate_on_kill is True  # the default


def run_in_worker(op: EdcTransferOperator) -> tuple[threading.Thread, list[BaseException]]:
    """``op.execute`` in a thread, as the worker runs it; the error it ends with goes to the list."""
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="transfer", map_index=-1, try_number=1)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"ti": ti})  # type: ignore[arg-type]
        except BaseException as err:
            outcome.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    return worker, outcome


def test_waiting_in_the_worker_times_out_with_the_same_typed_error(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-deferrable: the trigger runs in the worker and its time-out fails the task the same way."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    worker, outcome = run_in_worker(transfer_operator(timeout=1, deferrable=False, fallback_check_interval=3600))
    worker.join(30)
    [err] = outcome
    assert isinstance(err, EdcTransferTimeout)
    assert (err.transfer_process_id, err.state) == (TP, "REQUESTED")  # the state check at the time-out
    assert 1 <= err.waited_seconds < 10
    assert [r[2] for r in connector.calls("POST")] == [
        "/management/v3/transferprocesses",
        f"/management/v3/transferprocesses/{TP}/terminate",
    ]


def test_a_stall_in_the_worker_fails_the_task_before_its_timeout_and_terminates_the_transfer(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-deferrable, ``stall_timeout`` 0.5 s: no callback comes, the early state check (past
    stall_warning_after) tells REQUESTED, and the transfer stays there: the task fails long before its
    60 s ``timeout``, saying it stalled, and terminates the transfer."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_WARNING_AFTER", "0.2")
    op = transfer_operator(timeout=60, deferrable=False, fallback_check_interval=3600, stall_timeout=0.5)
    worker, outcome = run_in_worker(op)
    worker.join(30)
    [err] = outcome
    assert isinstance(err, EdcTransferTimeout)
    assert (err.transfer_process_id, err.state) == (TP, "REQUESTED")
    assert err.reason is not None
    assert err.reason.startswith("no change from REQUESTED for ")
    assert err.reason.endswith("(stall_timeout 0.5 s)")
    assert err.waited_seconds < 10
    assert [r[2] for r in connector.calls("POST")] == [
        "/management/v3/transferprocesses",
        f"/management/v3/transferprocesses/{TP}/terminate",
    ]


def test_stall_timeout_goes_to_the_trigger_and_survives_its_serialization(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from tests.airflow_compat import TaskDeferred

    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="transfer", map_index=-1, try_number=1)
    with pytest.raises(TaskDeferred) as info:
        transfer_operator(stall_timeout=timedelta(minutes=4), defer_after=0).execute({"ti": ti})  # type: ignore[arg-type]
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["stall_timeout"] == 240.0
    assert EdcCallbackTrigger(**kwargs).stall_timeout == 240.0
    assert transfer_operator().stall_timeout is None  # the config's, read where the wait runs
    with pytest.raises(ValueError, match="stall_timeout must be a number of seconds >= 0"):
        transfer_operator(stall_timeout=-1)


def test_killing_a_task_that_waits_in_the_worker_terminates_its_transfer(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow calls the operator's on_kill in the worker on SIGTERM (a user marked the task failed)."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    op = transfer_operator(timeout=2, deferrable=False, terminate_on_timeout=False, fallback_check_interval=3600)
    worker, outcome = run_in_worker(op)
    wait_until(lambda: connector.calls("POST", "/transferprocesses"), 10, "the transfer's start")
    wait_until(lambda: op._waiting_on == ("transfer", TP), 10, "the operator to wait in the worker")
    op.on_kill()
    [(_, _, path, body)] = connector.calls("POST", "/terminate")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"
    assert body["reason"] == "Airflow task transfer was killed"
    worker.join(30)
    [err] = outcome  # the wait's end: the state check at the deadline finds the transfer TERMINATED
    assert isinstance(err, EdcTransferFailed)
    assert err.state == "TERMINATED"


def test_killing_a_task_that_does_not_wait_in_the_worker_terminates_nothing(connector: FakeConnector) -> None:
    transfer_operator().on_kill()  # deferred (or not started yet): the trigger's on_kill is the one that acts
    transfer_operator(terminate_on_kill=False).on_kill()
    assert connector.requests == []


# -- stalled processes -----------------------------------------------------------------------------


async def test_state_checks_back_off_and_a_callback_starts_them_over(
    receiver: TestClient,
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow_edc_callbacks.triggers import engine as callback

    monkeypatch.setattr(callback, "MAX_CHECK_INTERVAL", 2.0)  # the cap (1 h in production), scaled down
    connector.states[TP] = "REQUESTED"
    start = time.monotonic()
    task = asyncio.ensure_future(first_trigger_event(transfer_trigger(fallback_check_interval=0.5), 30))
    await asyncio.to_thread(wait_until, lambda: len(connector.calls("GET")) >= 4, 20, "four state checks")
    checks = [t - start for t, *_ in connector.calls("GET")]
    gaps = [b - a for a, b in itertools.pairwise(checks)]
    # 0.5 s of silence, then 1, 2, 2 (capped): each gap twice the last until the cap; never earlier, and
    # later only by the scheduling delay of a busy machine
    assert checks[0] >= 0.45, checks  # its upper end includes the trigger's start: see the logged silences
    assert 0.9 <= gaps[0] <= 1.7, gaps
    assert 1.9 <= gaps[1] <= 2.7, gaps
    assert 1.9 <= gaps[2] <= 2.7, gaps  # capped
    silences = [
        line.split(" in ")[1].split(" s;")[0]
        for line in capsys.readouterr().out.splitlines()
        if "No callback for" in line
    ]
    assert silences[:4] == ["0.5", "1.0", "2.0", "2.0"], silences
    # a callback starts the sequence over: the next check comes after 0.5 s of silence, not 2
    await asyncio.to_thread(post, receiver, envelope("TransferProcessRequested", TP))
    posted = time.monotonic()
    count = len(connector.calls("GET"))
    await asyncio.to_thread(wait_until, lambda: len(connector.calls("GET")) > count, 5, "the next check")
    first_after = connector.calls("GET")[count][0]
    assert first_after - posted <= 1.5
    connector.states[TP] = "COMPLETED"
    payload = await asyncio.wait_for(task, 10)
    assert (payload["status"], payload["source"]) == ("success", "state_check")
    silences = [
        line.split(" in ")[1].split(" s;")[0]
        for line in capsys.readouterr().out.splitlines()
        if "No callback for" in line
    ]
    assert silences[0] == "0.5", silences  # the first check after the callback


async def test_a_stalled_transfer_gets_one_warning_naming_its_state_and_cause(
    receiver: TestClient,
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_WARNING_AFTER", "0.3")
    post(receiver, envelope("TransferProcessRequested", TP))
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 1.2), 10)
    assert payload["status"] == "timeout"
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if "more than stall_warning_after" in line]
    assert len(warnings) == 1, out
    assert f"Transfer process {TP} has been REQUESTED for" in warnings[0]
    assert "the provider did not answer" in warnings[0]
    assert "no data plane for the transfer type" in warnings[0]


async def test_a_negotiation_stalled_in_verified_warns_that_no_finalization_came(
    receiver: TestClient,
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_WARNING_AFTER", "0.3")
    body = envelope("ContractNegotiationVerified", CN)
    body["payload"] = {"contractNegotiationId": CN}
    post(receiver, body)
    trigger = EdcNegotiationTrigger(
        correlation_id=CORRELATION, contract_negotiation_id=CN, fallback_check_interval=3600, deadline=time.time() + 1
    )
    await first_trigger_event(trigger, 10)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "more than stall_warning_after" in line]
    assert len(warnings) == 1
    assert "VERIFIED" in warnings[0]
    assert "no finalization came from the provider" in warnings[0]


async def test_a_push_transfer_stalled_in_started_warns_about_the_data_plane(
    receiver: TestClient,
    connector: FakeConnector,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_WARNING_AFTER", "0.3")
    post(receiver, envelope("TransferProcessStarted", TP))
    await first_trigger_event(transfer_trigger(deadline=time.time() + 1), 10)
    warnings = [line for line in capsys.readouterr().out.splitlines() if "more than stall_warning_after" in line]
    assert len(warnings) == 1
    assert "STARTED" in warnings[0]
    assert "data plane is still copying" in warnings[0]


async def test_a_transfer_stalled_past_stall_timeout_ends_as_a_time_out_after_one_state_check(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that never finishes the PUSH: STARTED by callback, the connector still says STARTED at
    the stall time-out: the wait ends long before the deadline, saying it stalled."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "0.5")
    post(receiver, envelope("TransferProcessStarted", TP))
    connector.states[TP] = "STARTED"
    started = time.time()
    payload = await first_trigger_event(transfer_trigger(deadline=started + 60), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("timeout", "STARTED", "state_check")
    assert payload["reason"].startswith("no change from STARTED for ")
    assert payload["reason"].endswith(" s (stall_timeout 0.5 s)")
    assert payload["waited_seconds"] < 10
    assert [r[2] for r in connector.calls("GET")] == [f"/management/v3/transferprocesses/{TP}"]  # asked once
    assert connector.calls("POST") == []  # the trigger terminates nothing; the operator does


async def test_a_stall_whose_state_check_finds_the_transfer_completed_is_that_result(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Completed callback was lost: the stall's state check finds the transfer COMPLETED."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "0.3")
    post(receiver, envelope("TransferProcessStarted", TP))
    connector.states[TP] = "COMPLETED"
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 60), 10)
    assert (payload["status"], payload["state"], payload["source"]) == ("success", "COMPLETED", "state_check")
    assert payload["reason"] is None


async def test_a_stall_check_that_finds_the_transfer_moved_on_keeps_waiting(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REQUESTED came by callback, STARTED was lost: the check at the stall time-out finds STARTED, so the
    wait goes on and the stall clock starts over from there; one more stall time-out in STARTED ends it."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "1.2")
    post(receiver, envelope("TransferProcessRequested", TP))
    connector.states[TP] = "STARTED"
    started = time.time()
    payload = await first_trigger_event(transfer_trigger(deadline=started + 60), 15)
    assert time.time() - started >= 2.4  # two stall time-outs, not one
    assert (payload["status"], payload["state"]) == ("timeout", "STARTED")
    assert payload["reason"].startswith("no change from STARTED for ")
    assert len(connector.calls("GET")) == 2


async def test_a_stall_is_never_declared_while_the_connector_cannot_be_asked(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state check at the stall time-out fails (the connector answers 404): the check is tried again
    after STALL_RECHECK_SECONDS, never a stall; here the deadline ends the wait."""
    from airflow_edc_callbacks.triggers import engine

    monkeypatch.setattr(engine, "STALL_RECHECK_SECONDS", 0.3)
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "0.2")
    post(receiver, envelope("TransferProcessStarted", TP))
    payload = await first_trigger_event(transfer_trigger(deadline=time.time() + 1.5), 10)
    assert (payload["status"], payload["state"], payload["reason"]) == ("timeout", "STARTED", None)
    assert 3 <= len(connector.calls("GET")) <= 7  # about every 0.3 s, then once at the deadline


async def test_a_suspended_transfer_never_stalls_out(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone suspended the transfer on purpose: only the deadline ends the wait."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STALL_TIMEOUT", "0.2")
    post(receiver, envelope("TransferProcessSuspended", TP))
    connector.states[TP] = "SUSPENDED"
    started = time.time()
    payload = await first_trigger_event(transfer_trigger(deadline=started + 1.5), 10)
    assert time.time() >= started + 1.5
    assert (payload["status"], payload["state"], payload["reason"]) == ("timeout", "SUSPENDED", None)


def test_a_stall_time_out_terminates_the_transfer_and_says_it_stalled(connector: FakeConnector) -> None:
    connector.states[TP] = "STARTED"
    reason = "no change from STARTED for 241 s (stall_timeout 240 s)"
    with pytest.raises(EdcTransferTimeout) as info:
        transfer_operator().execute_complete({}, timeout_event(state="STARTED", reason=reason))  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert str(info.value) == (
        f"EDC transfer process {TP} on {connector.url} timed out after 60 s in state STARTED: {reason}; "
        "terminate requested on the connector"
    )
    [(_, _, path, body)] = connector.calls("POST")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"
    assert body["reason"].endswith(f"timed out after 60 s in state STARTED: {reason}")


# -- kill and clear --------------------------------------------------------------------------------


class FakeSupervisorComms:
    """Stands in for the triggerer's supervisor channel (the Task SDK's ``SUPERVISOR_COMMS``): answers
    ``GetTaskStates`` with ``state`` for the task instance, or raises ``error``."""

    def __init__(self, state: str | None = None, error: Exception | None = None) -> None:
        self.state = state
        self.error = error
        self.sent: list[Any] = []

    def send(self, msg: Any) -> Any:
        from airflow.sdk.execution_time.comms import TaskStatesResult

        self.sent.append(msg)
        if self.error is not None:
            raise self.error
        return TaskStatesResult(task_states={"run-1": {"transfer": self.state}})


def killed_trigger(comms: FakeSupervisorComms, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Any:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    trigger = overrides.pop("trigger", None) or transfer_trigger(terminate_on_kill=True, **overrides)
    trigger.task_instance = SimpleNamespace(dag_id="dag-1", run_id="run-1", task_id="transfer", map_index=-1)
    return trigger


@pytest.mark.parametrize("state", ["failed", "success", None])
async def test_on_kill_terminates_the_transfer_when_the_task_instance_left_deferred(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch, state: str | None
) -> None:
    """Marked failed or success, or cleared (state none): the user stopped the task, the transfer goes too."""
    comms = FakeSupervisorComms(state)
    connector.states[TP] = "STARTED"
    await killed_trigger(comms, monkeypatch).on_kill()
    [(_, _, path, body)] = connector.calls("POST")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"
    assert body["reason"] == f"Airflow task instance {state or 'none'} by a user action (on_kill)"
    # one state request (Airflow 3.1 also sends the connection read through the supervisor)
    [msg] = [m for m in comms.sent if type(m).__name__ == "GetTaskStates"]
    assert (msg.dag_id, msg.task_ids, msg.run_ids) == ("dag-1", ["transfer"], ["run-1"])


async def test_on_kill_leaves_the_transfer_alone_while_the_task_instance_is_still_deferred(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Airflow 3.3 also calls on_kill when the trigger moved to another triggerer (apache/airflow PR #73454)."""
    await killed_trigger(FakeSupervisorComms("deferred"), monkeypatch).on_kill()
    assert connector.requests == []
    assert "still deferred" in capsys.readouterr().out


async def test_on_kill_does_not_terminate_when_the_task_state_cannot_be_read(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await killed_trigger(FakeSupervisorComms(error=ConnectionError("api-server down")), monkeypatch).on_kill()
    assert connector.requests == []
    out = capsys.readouterr().out
    assert "could not read the state of task instance transfer" in out
    assert f"not terminating transfer process {TP}" in out


async def test_on_kill_after_the_trigger_fired_terminates_nothing(
    receiver: TestClient, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow 3.3 cancels a fired trigger that is still closing as if a user acted; the task instance is
    then scheduled to resume on the event, and its transfer must live on (a PULL's EDR is needed next)."""
    post(receiver, envelope("TransferProcessCompleted", TP))
    trigger = killed_trigger(FakeSupervisorComms("scheduled"), monkeypatch)
    payload = await first_trigger_event(trigger, 10)
    assert payload["status"] == "success"
    await trigger.on_kill()
    assert connector.calls("POST") == []


async def test_on_kill_logs_a_failing_terminate_and_does_not_raise(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connector.terminate_status = 500
    await killed_trigger(FakeSupervisorComms("failed"), monkeypatch).on_kill()
    assert len(connector.calls("POST", "/terminate")) == 1
    assert f"on_kill: could not terminate transfer process {TP}" in capsys.readouterr().out


async def test_on_kill_without_terminate_on_kill_does_nothing(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor's trigger (it did not start the transfer) and operators with terminate_on_kill=False."""
    comms = FakeSupervisorComms("failed")
    trigger = killed_trigger(comms, monkeypatch, trigger=transfer_trigger(correlation_id=None))
    await trigger.on_kill()
    assert (connector.requests, comms.sent) == ([], [])


async def test_on_kill_terminates_a_negotiation(connector: FakeConnector, monkeypatch: pytest.MonkeyPatch) -> None:
    trigger = EdcNegotiationTrigger(correlation_id=CORRELATION, contract_negotiation_id=CN, terminate_on_kill=True)
    await killed_trigger(FakeSupervisorComms("failed"), monkeypatch, trigger=trigger).on_kill()
    [(_, _, path, body)] = connector.calls("POST")
    assert path == f"/management/v3/contractnegotiations/{CN}/terminate"
    assert (body["@type"], body["@id"]) == ("TerminateNegotiation", CN)


async def test_on_kill_finishes_its_terminate_when_airflow_cancels_it_again(
    connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow 3.3.2 sends the cancel of a killed trigger again with every state sync (about every second)
    until the trigger has finished, which cancels an on_kill still waiting for the API server."""
    release = threading.Event()

    class SlowComms(FakeSupervisorComms):
        def send(self, msg: Any) -> Any:
            self.sent.append(msg)
            release.wait(10)
            return FakeSupervisorComms.send(FakeSupervisorComms(self.state), msg)

    comms = SlowComms("failed")
    kill = asyncio.ensure_future(killed_trigger(comms, monkeypatch).on_kill())
    await asyncio.to_thread(wait_until, lambda: comms.sent, 5, "the task state request")
    kill.cancel()  # Airflow's next cancel
    with pytest.raises(asyncio.CancelledError):
        await kill
    assert connector.requests == []
    release.set()
    await asyncio.to_thread(wait_until, lambda: connector.calls("POST", "/terminate"), 10, "the terminate")
    [(_, _, path, _)] = connector.calls("POST")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"


def test_the_cli_terminates_what_airflow_3_1_and_3_2_leave_running(
    connector: FakeConnector, capsys: pytest.CaptureFixture[str]
) -> None:
    """Airflow before 3.3 never calls a trigger's on_kill: a user terminates the process by hand."""
    from airflow_edc_callbacks.cli import main

    connector.states.update({TP: "STARTED", CN: "REQUESTED"})
    assert main(["terminate", TP, "--reason", "marked failed in Airflow"]) == 0
    assert f"Asked {connector.url} to terminate transfer process {TP}." in capsys.readouterr().out
    connector.terminate_status = 409
    assert main(["terminate", CN, "--negotiation"]) == 1
    assert f"could not terminate contract negotiation {CN}" in capsys.readouterr().err
    [(_, _, first, body), (_, _, second, _)] = connector.calls("POST")
    assert (first, body["reason"]) == (f"/management/v3/transferprocesses/{TP}/terminate", "marked failed in Airflow")
    assert second == f"/management/v3/contractnegotiations/{CN}/terminate"
    connector.states[TP] = "COMPLETED"  # EDC refuses (409) to terminate a final process: nothing to do
    assert main(["terminate", TP]) == 0
    assert f"Transfer process {TP} on {connector.url}: it was COMPLETED already." in capsys.readouterr().out


def test_the_negotiated_transfers_negotiation_time_out_terminates_the_negotiation(connector: FakeConnector) -> None:
    from airflow_edc_callbacks.operators import EdcNegotiatedTransferOperator

    connector.states[CN] = "VERIFIED"
    op = EdcNegotiatedTransferOperator(
        task_id="negotiate_and_pull",
        asset_id="asset",
        counter_party_address="http://p/protocol",
        counter_party_id="p",
        transfer_type="HttpData-PULL",
    )
    event = timeout_event(contract_negotiation_id=CN, state="VERIFIED", waited_seconds=3600.0)
    del event["transfer_process_id"]
    with pytest.raises(EdcNegotiationTimeout) as info:
        op.negotiation_complete({}, event)  # type: ignore[arg-type]
    assert (info.value.contract_negotiation_id, info.value.state) == (CN, "VERIFIED")
    assert [r[2] for r in connector.calls("POST")] == [f"/management/v3/contractnegotiations/{CN}/terminate"]
