"""A PULL transfer's life after the wait: ``terminate_after_fetch``, suspended and resumed transfers, a
later termination that must not fail a finished task, compacted list fields and the ``events`` rule.

The connector's answers are real EDC 0.15.1 bodies (tests/fixtures/edc); the provider's data endpoint is
the demo data server over real HTTP; callbacks go through the real receiver and store.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import (
    SUSPENSION_TRANSFER_STATES,
    EventEnvelope,
    WaitFor,
    check_callback_events,
    state_outcome,
    terminal_outcome,
)
from airflow_edc_callbacks.operators import (
    EdcContractNegotiationOperator,
    EdcNegotiatedTransferOperator,
    EdcPullDataOperator,
    EdcTransferOperator,
)
from airflow_edc_callbacks.sensors import EdcTransferSensor
from airflow_edc_callbacks.tokens import make_token
from airflow_edc_callbacks.triggers import EdcCallbackTrigger
from demo.data_server import DataServerHandle, source_bytes, start_data_server
from tests.conftest import SIGNING_KEY
from tests.helpers import EDC_FIXTURES, envelope, first_trigger_event, until_subscribed

FIXTURES = EDC_FIXTURES
CONN = json.dumps({"conn_type": "edc", "host": "http://consumer.example:29193/management", "password": "key"})
CORRELATION = "corr-pull"
TP = "tp-pull"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def edc_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", CONN)


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[DataServerHandle]:
    with start_data_server(0, tmp_path / "sink") as server:
        yield server


Answer = Callable[[httpx.Request], httpx.Response]


def connector(data_url: str, terminate: httpx.Response, state: str = "STARTED") -> tuple[EdcManagementHook, list[str]]:
    """A hook on a consumer that serves the EDR (pointing at ``data_url``), answers the terminate with
    ``terminate`` and the state request with ``state``; records ``METHOD path`` of every request."""
    edr = fixture("mgmt_edr_dataaddress.json")
    edr["https://w3id.org/edc/v0.0.1/ns/endpoint"] = data_url
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path.endswith("/dataaddress"):
            return httpx.Response(200, json=edr)
        if request.url.path.endswith("/terminate"):
            return terminate
        if request.url.path.endswith("/state"):
            return httpx.Response(200, json={"@type": "TransferState", "state": state})
        return httpx.Response(404, json=[{"message": "unexpected", "type": "ObjectNotFound"}])

    return EdcManagementHook(transport=httpx.MockTransport(answer), retries=0), calls


def warnings(logged: str) -> list[str]:
    """The warning lines of a captured structlog output."""
    return [line for line in logged.splitlines() if "[warning" in line and "outside of the Task Runner" not in line]


def pull_operator(tmp_path: Path, hook: EdcManagementHook, **kwargs: Any) -> EdcPullDataOperator:
    op = EdcPullDataOperator(
        task_id="fetch", transfer_process_id=TP, destination=str(tmp_path / "out" / "data.json"), **kwargs
    )
    op._hook = lambda: hook  # type: ignore[method-assign]
    return op


# -- terminate_after_fetch ----------------------------------------------------------------------------------


def test_pull_operator_leaves_the_transfer_running_by_default(tmp_path: Path, data_server: DataServerHandle) -> None:
    hook, calls = connector(f"{data_server.url}/source/demo-asset", httpx.Response(204))
    op = pull_operator(tmp_path, hook)
    assert op.terminate_after_fetch is False
    result = op.execute({})  # type: ignore[arg-type]
    assert Path(result["file"]).read_bytes() == source_bytes("demo-asset")
    assert "terminated" not in result
    assert not any(c.endswith("/terminate") for c in calls)


def test_pull_operator_terminates_after_the_data_landed(
    tmp_path: Path, data_server: DataServerHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    terminated: list[dict[str, Any]] = []
    edr = fixture("mgmt_edr_dataaddress.json")
    edr["https://w3id.org/edc/v0.0.1/ns/endpoint"] = f"{data_server.url}/source/demo-asset"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/terminate"):
            # the data is there before the transfer is terminated
            assert (tmp_path / "out" / "data.json").read_bytes() == source_bytes("demo-asset")
            terminated.append(json.loads(request.content))
            return httpx.Response(204)
        return httpx.Response(200, json=edr)

    hook = EdcManagementHook(transport=httpx.MockTransport(answer), retries=0)
    result = pull_operator(tmp_path, hook, terminate_after_fetch=True).execute({})  # type: ignore[arg-type]
    logged = capsys.readouterr().out  # Airflow's structlog writes task logs to stdout here
    assert result["terminated"] is True
    assert result["size"] == len(source_bytes("demo-asset"))
    assert len(terminated) == 1
    assert terminated[0]["@type"] == "TerminateTransfer"
    assert terminated[0]["reason"] == "data fetched by Airflow task fetch"
    assert f"Terminated transfer process {TP}" in logged


@pytest.mark.parametrize("final_state", ["COMPLETED", "TERMINATED"])
def test_a_transfer_final_already_is_no_problem(
    tmp_path: Path, data_server: DataServerHandle, capsys: pytest.CaptureFixture[str], final_state: str
) -> None:
    conflict = fixture("mgmt_error_terminate_completed.json")  # EDC 0.15.1's 409 for a COMPLETED process
    hook, calls = connector(
        f"{data_server.url}/source/demo-asset", httpx.Response(409, json=conflict["body"]), state=final_state
    )
    result = pull_operator(tmp_path, hook, terminate_after_fetch=True).execute({})  # type: ignore[arg-type]
    logged = capsys.readouterr().out  # Airflow's structlog writes task logs to stdout here
    assert result["terminated"] is True
    assert calls[-2:] == [
        f"POST /management/v3/transferprocesses/{TP}/terminate",
        f"GET /management/v3/transferprocesses/{TP}/state",
    ]
    assert f"Transfer process {TP} was {final_state} already; nothing to terminate" in logged
    assert not warnings(logged)


@pytest.mark.parametrize(
    ("terminate", "state", "warning"),
    [
        (httpx.Response(500, json=[{"message": "boom", "type": "InternalError"}]), "STARTED", "answered 500: "),
        (httpx.Response(409, json=[{"message": "busy", "type": "ObjectConflict"}]), "STARTED", "(state STARTED)"),
        (httpx.Response(400, json=[{"message": "bad", "type": "ValidationFailure"}]), "SUSPENDED", "(state SUSPENDED)"),
    ],
)
def test_a_failing_terminate_is_a_warning_never_a_failed_task(
    tmp_path: Path,
    data_server: DataServerHandle,
    capsys: pytest.CaptureFixture[str],
    terminate: httpx.Response,
    state: str,
    warning: str,
) -> None:
    hook, _ = connector(f"{data_server.url}/source/demo-asset", terminate, state=state)
    result = pull_operator(tmp_path, hook, terminate_after_fetch=True).execute({})  # type: ignore[arg-type]
    assert result["terminated"] is False
    assert Path(result["file"]).read_bytes() == source_bytes("demo-asset")
    warned = warnings(capsys.readouterr().out)
    assert len(warned) == 1, warned
    assert f"Could not terminate transfer process {TP}" in warned[0]
    assert warning in warned[0]


def test_an_unreachable_connector_at_terminate_is_a_warning(
    tmp_path: Path, data_server: DataServerHandle, capsys: pytest.CaptureFixture[str]
) -> None:
    edr = fixture("mgmt_edr_dataaddress.json")
    edr["https://w3id.org/edc/v0.0.1/ns/endpoint"] = f"{data_server.url}/source/demo-asset"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/terminate"):
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json=edr)

    hook = EdcManagementHook(transport=httpx.MockTransport(answer), retries=0)
    result = pull_operator(tmp_path, hook, terminate_after_fetch=True).execute({})  # type: ignore[arg-type]
    assert result["terminated"] is False
    warned = warnings(capsys.readouterr().out)
    assert len(warned) == 1, warned
    assert "Cannot reach the EDC Management API" in warned[0]


def test_negotiated_transfer_terminates_after_its_fetch(tmp_path: Path, data_server: DataServerHandle) -> None:
    hook, calls = connector(f"{data_server.url}/source/demo-asset", httpx.Response(204))
    op = EdcNegotiatedTransferOperator(
        task_id="one_step",
        asset_id="demo-asset",
        counter_party_address="http://provider.example/protocol/2025-1",
        counter_party_id="provider",
        transfer_type="HttpData-PULL",
        destination=str(tmp_path / "one-step.json"),
        terminate_after_fetch=True,
    )
    op._hook = lambda: hook  # type: ignore[method-assign]
    started = {
        "status": "success",
        "transfer_process_id": TP,
        "state": "STARTED",
        "event_type": "TransferProcessStarted",
        "source": "callback",
        "timeline": [{"type": "TransferProcessStarted", "at": 1, "received_at": 2}],
    }
    result = op.execute_complete({}, started, negotiation=None)
    assert Path(result["data"]["file"]).read_bytes() == source_bytes("demo-asset")
    assert result["data"]["terminated"] is True
    assert calls[-1] == f"POST /management/v3/transferprocesses/{TP}/terminate"


def test_negotiated_transfer_terminates_nothing_without_the_option(
    tmp_path: Path, data_server: DataServerHandle
) -> None:
    hook, calls = connector(f"{data_server.url}/source/demo-asset", httpx.Response(204))
    op = EdcNegotiatedTransferOperator(
        task_id="one_step",
        asset_id="demo-asset",
        counter_party_address="http://provider.example/protocol/2025-1",
        counter_party_id="provider",
        transfer_type="HttpData-PULL",
        destination=str(tmp_path / "one-step.json"),
    )
    op._hook = lambda: hook  # type: ignore[method-assign]
    started = {"status": "success", "transfer_process_id": TP, "state": "STARTED", "source": "callback"}
    result = op.execute_complete({}, started, negotiation=None)
    assert "terminated" not in result["data"]
    assert not any(c.endswith("/terminate") for c in calls)


# -- suspended, resumed, and terminated later ---------------------------------------------------------------


def post(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(f"/callbacks/{make_token(SIGNING_KEY, CORRELATION)}", json=body)
    assert response.status_code == 200, response.text


def trigger(wait_for: str, **overrides: Any) -> EdcCallbackTrigger:
    kwargs: dict[str, Any] = {
        "correlation_id": CORRELATION,
        "transfer_process_id": TP,
        "wait_for": wait_for,
        "conn_id": "edc_default",
        "fallback_check_interval": 3600,
    }
    kwargs.update(overrides)
    return EdcCallbackTrigger(**kwargs)


@pytest.mark.parametrize("event_type", ["TransferProcessSuspended", "TransferProcessResumed"])
@pytest.mark.parametrize("wait_for", list(WaitFor)[1:])
def test_suspended_and_resumed_events_never_end_a_wait(event_type: str, wait_for: WaitFor) -> None:
    assert terminal_outcome(event_type, wait_for) is None


@pytest.mark.parametrize("state", sorted(SUSPENSION_TRANSFER_STATES))
@pytest.mark.parametrize("wait_for", list(WaitFor)[1:])
def test_a_state_check_of_a_suspended_transfer_keeps_waiting(state: str, wait_for: WaitFor) -> None:
    assert state_outcome(state, wait_for) is None
    assert state_outcome(state.lower(), wait_for) is None


async def test_push_suspended_and_resumed_while_waiting_succeeds_once_with_the_timeline(
    receiver: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """What EDC 0.18+ sends (with Resumed) while a PUSH task waits: every event is in the timeline."""
    task = asyncio.ensure_future(first_trigger_event(trigger("completed")))
    await until_subscribed()
    sequence = [
        "TransferProcessStarted",
        "TransferProcessSuspended",
        "TransferProcessResumed",
        "TransferProcessStarted",
        "TransferProcessCompleted",
    ]
    for event_type in sequence:
        body = envelope(event_type, TP, reason="maintenance" if event_type.endswith("Suspended") else None)
        await asyncio.to_thread(post, receiver, body)
    payload = await asyncio.wait_for(task, 10)
    assert (payload["status"], payload["state"]) == ("success", "COMPLETED")
    assert [t["type"] for t in payload["timeline"]] == sequence
    logged = capsys.readouterr().out  # the trigger's log (the task log in the triggerer)
    assert f"Callback TransferProcessSuspended for transfer process {TP}" in logged
    assert f"Callback TransferProcessResumed for transfer process {TP}" in logged


async def test_a_pull_suspended_before_the_wait_began_waits_for_its_resumption(
    receiver: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sensor or a retry reads Started, Suspended from the store: the transfer is suspended now, so the
    first Started does not end the wait; the Started EDC sends when it is resumed does."""
    post(receiver, envelope("TransferProcessStarted", TP, envelope_id="started-1"))
    post(receiver, envelope("TransferProcessSuspended", TP, reason="maintenance"))
    task = asyncio.ensure_future(first_trigger_event(trigger("started")))
    await until_subscribed()
    waiting = f"transfer process {TP} was suspended after it started; waiting for it to be resumed"
    deadline = asyncio.get_running_loop().time() + 5
    logged = ""
    while waiting not in logged:  # the trigger has read the backlog
        assert asyncio.get_running_loop().time() < deadline, logged
        await asyncio.sleep(0.01)
        logged += capsys.readouterr().out
    assert not task.done()
    await asyncio.to_thread(post, receiver, envelope("TransferProcessStarted", TP, envelope_id="started-2"))
    payload = await asyncio.wait_for(task, 10)
    assert (payload["status"], payload["state"]) == ("success", "STARTED")
    assert [t["type"] for t in payload["timeline"]] == [
        "TransferProcessStarted",
        "TransferProcessSuspended",
        "TransferProcessStarted",
    ]
    assert payload["timeline"][-1]["envelope_id"] == "started-2"


async def test_a_suspended_posted_with_another_tasks_token_does_not_hold_a_started_back(
    receiver: TestClient,
) -> None:
    """The token of another task instance is valid but not bound to this transfer: its Suspended must not
    keep this task waiting (nor appear in its timeline)."""
    post(receiver, envelope("TransferProcessStarted", TP, envelope_id="started-1"))
    forged = envelope("TransferProcessSuspended", TP, reason="forged", envelope_id="forged-suspend")
    response = receiver.post(f"/callbacks/{make_token(SIGNING_KEY, 'another-task')}", json=forged)
    assert response.status_code == 200, response.text  # stored (valid token), but not trusted for TP
    payload = await first_trigger_event(trigger("started"))
    assert (payload["status"], payload["state"]) == ("success", "STARTED")
    assert [t["envelope_id"] for t in payload["timeline"]] == ["started-1"]


async def test_a_pull_resumed_before_the_wait_began_succeeds_on_the_latest_start(receiver: TestClient) -> None:
    for body in (
        envelope("TransferProcessStarted", TP, envelope_id="started-1"),
        envelope("TransferProcessSuspended", TP),
        envelope("TransferProcessStarted", TP, envelope_id="started-2"),
    ):
        post(receiver, body)
    payload = await first_trigger_event(trigger("started"))
    assert payload["status"] == "success"
    assert payload["timeline"][-1]["envelope_id"] == "started-2"


async def test_a_pull_that_started_is_not_failed_by_a_later_termination(receiver: TestClient) -> None:
    """PULL stays STARTED and is TERMINATED later (an EDR expiry): a waiter that reads both succeeds on the
    Started, and a Terminated arriving after the task finished changes nothing."""
    post(receiver, envelope("TransferProcessStarted", TP))
    post(receiver, envelope("TransferProcessTerminated", TP, reason="EDR expired"))
    payload = await first_trigger_event(trigger("started"))
    assert (payload["status"], payload["state"]) == ("success", "STARTED")
    assert [t["type"] for t in payload["timeline"]] == ["TransferProcessStarted"]


async def test_a_state_check_reporting_suspended_keeps_the_task_waiting(receiver: TestClient) -> None:
    """Silence, then state checks: SUSPENDED (keep waiting), RESUMING (keep waiting), then COMPLETED."""
    states = iter(["SUSPENDED", "RESUMING", "COMPLETED"])
    asked: list[str] = []
    body = fixture("mgmt_transferprocess_completed.json")

    def answer(request: httpx.Request) -> httpx.Response:
        state = next(states)
        asked.append(state)
        return httpx.Response(200, json={**body, "@id": TP, "state": state})

    waiting = trigger("completed", fallback_check_interval=0.2)
    waiting.hook = EdcManagementHook(async_transport=httpx.MockTransport(answer), retries=0)
    payload = await asyncio.wait_for(first_trigger_event(waiting), 20)
    assert asked == ["SUSPENDED", "RESUMING", "COMPLETED"]
    assert (payload["status"], payload["state"], payload["source"]) == ("success", "COMPLETED", "state_check")


def test_a_finished_pull_is_not_taken_over_by_a_retry_once_terminated(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry of the task looks for an earlier try's unfinished transfer: a PULL terminated after its
    task finished is final, so nothing waits for it (and nothing fails on it)."""
    terminated = fixture("mgmt_transferprocess_terminated_by_consumer.json")
    hook = EdcManagementHook(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=[terminated])))
    op = EdcTransferOperator(
        task_id="pull",
        contract_id="c",
        counter_party_address="http://provider.example/protocol/2025-1",
        transfer_type="HttpData-PULL",
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="pull", map_index=-1, try_number=2)
    assert op.find_unfinished_transfer({"ti": ti}, hook) is None  # type: ignore[arg-type]


# -- compacted list fields ----------------------------------------------------------------------------------


def test_a_get_with_one_callback_address_compacted_to_an_object_reads_as_a_list() -> None:
    """EDC 0.15.1's GET of a transfer: ``callbackAddresses`` is an object and ``events`` a string."""
    body = fixture("mgmt_transferprocess_completed.json")
    assert isinstance(body["callbackAddresses"], dict)
    hook = EdcManagementHook(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=body)))
    # the query answer with one process compacted to an object, too
    assert [p["@id"] for p in hook.query_transfer_processes()] == [body["@id"]]
    envelope_body = envelope("TransferProcessStarted", TP, callbackAddresses=body["callbackAddresses"])
    parsed = EventEnvelope.model_validate(envelope_body)
    assert parsed.payload.callbackAddresses is not None
    assert [(a.uri, a.events) for a in parsed.payload.callbackAddresses] == [
        ("http://127.0.0.1:18999/cb/t1", ["transfer.process"])
    ]


def test_a_retry_reads_a_compacted_query_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    running = {**fixture("mgmt_transferprocess_completed.json"), "@id": "tp-running", "state": "STARTED"}
    hook = EdcManagementHook(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=running)))
    op = EdcTransferOperator(
        task_id="pull",
        contract_id="c",
        counter_party_address="http://provider.example/protocol/2025-1",
        transfer_type="HttpData-PULL",
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="pull", map_index=-1, try_number=2)
    assert op.find_unfinished_transfer({"ti": ti}, hook) == "tp-running"  # type: ignore[arg-type]


# -- the events rule ----------------------------------------------------------------------------------------


def test_events_are_prefixes_and_one_string_is_one_prefix() -> None:
    assert check_callback_events(["transfer.process", " contract.negotiation "]) == (
        "transfer.process",
        "contract.negotiation",
    )
    assert check_callback_events("transfer.process") == ("transfer.process",)


@pytest.mark.parametrize("events", [[], (), None])
def test_an_empty_events_list_is_refused_with_why(events: Any) -> None:
    with pytest.raises(ValueError, match="EDC matches event names by prefix, so a callback address with an empty"):
        check_callback_events(events)


def test_an_empty_prefix_is_refused_with_why() -> None:
    with pytest.raises(ValueError, match="an empty one subscribes to every event"):
        check_callback_events(["transfer.process", " "])


def test_the_hook_refuses_a_callback_address_that_never_fires() -> None:
    hook = EdcManagementHook()
    assert hook.callback_address("http://cb", events="contract.negotiation")["events"] == ["contract.negotiation"]
    with pytest.raises(ValueError, match="never fires"):
        hook.callback_address("http://cb", events=[])


def test_static_callback_registration_refuses_empty_events(edc_config: str) -> None:
    from airflow_edc_callbacks.hooks.static_callback import EdcStaticCallbackHook

    with pytest.raises(ValueError, match="never fires"):
        EdcStaticCallbackHook().register("cbempty", [])
    with pytest.raises(ValueError, match="subscribes to every event"):
        EdcStaticCallbackHook().register("cbempty", ["transfer.process", ""])


# -- provider conventions -----------------------------------------------------------------------------------


PROVIDER = "http://provider.example/protocol/2025-1"


@pytest.mark.parametrize(
    "make",
    [
        lambda: EdcTransferOperator(
            task_id="t", contract_id="c", counter_party_address=PROVIDER, transfer_type="HttpData-PUSH"
        ),
        lambda: EdcNegotiatedTransferOperator(
            task_id="t",
            asset_id="a",
            counter_party_address=PROVIDER,
            counter_party_id="p",
            transfer_type="HttpData-PULL",
        ),
        lambda: EdcContractNegotiationOperator(
            task_id="t", asset_id="a", counter_party_address=PROVIDER, counter_party_id="p"
        ),
        lambda: EdcTransferSensor(task_id="t", transfer_process_id="tp"),
    ],
    ids=["transfer", "negotiated_transfer", "negotiation", "sensor"],
)
def test_deferrable_defaults_to_airflows_default_deferrable(make: Callable[[], Any]) -> None:
    from airflow.configuration import conf

    assert conf.getboolean("operators", "default_deferrable", fallback=False) is False  # Airflow's default
    assert make().deferrable is False


def test_deferrable_follows_default_deferrable_when_it_is_set() -> None:
    """``[operators] default_deferrable = True`` makes every operator and the sensor defer (read when the
    provider is imported, as Airflow's own providers do: a fresh interpreter)."""
    code = (
        "from airflow_edc_callbacks.operators import EdcContractNegotiationOperator, EdcNegotiatedTransferOperator, "
        "EdcTransferOperator\n"
        "from airflow_edc_callbacks.sensors import EdcTransferSensor\n"
        "p = 'http://p/protocol'\n"
        "ops = [EdcTransferOperator(task_id='a', contract_id='c', counter_party_address=p,"
        " transfer_type='HttpData-PUSH'),"
        " EdcNegotiatedTransferOperator(task_id='b', asset_id='a', counter_party_address=p, counter_party_id='p',"
        " transfer_type='HttpData-PULL'),"
        " EdcContractNegotiationOperator(task_id='c', asset_id='a', counter_party_address=p, counter_party_id='p'),"
        " EdcTransferSensor(task_id='d', transfer_process_id='tp')]\n"
        "print([op.deferrable for op in ops])\n"
    )
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().splitlines()[-1] == "[True, True, True, True]"


@pytest.mark.parametrize("cls", [EdcTransferOperator, EdcNegotiatedTransferOperator])
def test_transfer_type_is_required_in_every_operator(cls: type) -> None:
    assert inspect.signature(cls.__init__).parameters["transfer_type"].default is inspect.Parameter.empty
    kwargs: dict[str, Any] = {"task_id": "t", "counter_party_address": "http://p/protocol"}
    kwargs.update({"contract_id": "c"} if cls is EdcTransferOperator else {"asset_id": "a", "counter_party_id": "p"})
    with pytest.raises(TypeError, match="transfer_type"):
        cls(**kwargs)


@pytest.mark.parametrize("events", [[""], [" , "]])
def test_static_config_cli_refuses_empty_events(events: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_edc_callbacks.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["static-config", "cbempty", "--events", *events])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "EDC matches event names by prefix" in error
