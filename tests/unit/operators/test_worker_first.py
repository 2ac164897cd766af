"""Wait in the worker first, then defer (``defer_after``): the operators run against the real store, with
callbacks posted to the real receiver over HTTP, and a FAKE Management API (tests/fake_connector.py).

A process that ends within ``defer_after`` completes the task in the worker with the result and errors
a deferral would give; otherwise the task defers to the same trigger as with ``defer_after=0``. Windows
are long (60 s) where the test needs the event to come within them, so no test depends on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.exceptions import EdcNegotiationFailed, EdcTransferFailed
from airflow_edc_callbacks.operators import (
    EdcContractNegotiationOperator,
    EdcNegotiatedTransferOperator,
    EdcTransferOperator,
)
from airflow_edc_callbacks.store import get_store
from airflow_edc_callbacks.tokens import correlation_id_for, make_token
from airflow_edc_callbacks.triggers import EdcCallbackTrigger, EdcNegotiationTrigger
from tests.airflow_compat import TaskDeferred
from tests.conftest import SIGNING_KEY
from tests.fake_connector import FakeConnector
from tests.helpers import envelope, wait_until

TP = "tp-lifecycle"  # what the fake connector starts
CN = "cn-lifecycle"
BASE = "http://airflow/edc-callbacks"
LONG = 60.0  # a window no test waits out
OFFER = {"@id": "offer-1", "@type": "odrl:Offer", "odrl:permission": [], "odrl:prohibition": [], "odrl:obligation": []}


@pytest.fixture(autouse=True)
def callback_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", BASE)


def ti(task_id: str) -> SimpleNamespace:
    return SimpleNamespace(dag_id="d", run_id="r", task_id=task_id, map_index=-1, try_number=1)


def post(receiver: TestClient, body: dict[str, Any], task_id: str = "transfer") -> int:
    """POST a callback with the token of ``task_id``'s callback address (another task's: a forgery)."""
    token = make_token(SIGNING_KEY, correlation_id_for("d", "r", task_id, -1))
    return receiver.post(f"/callbacks/{token}", json=body).status_code


def post_to_callback_address(receiver: TestClient, request: Any, body: dict[str, Any]) -> int:
    """POST ``body`` to the callback address a start request carried, as the connector does."""
    [address] = request["callbackAddresses"]
    return receiver.post(address["uri"].removeprefix(BASE), json=body).status_code


class Worker:
    """``execute`` in a thread, as a worker runs it: its result, or the exception it ended with."""

    def __init__(self, op: Any, task_id: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(op, task_id))
        self._thread.start()

    def _run(self, op: Any, task_id: str) -> None:
        try:
            self.result = op.execute({"ti": ti(task_id)})
        except BaseException as err:
            self.error = err

    def join(self) -> Worker:
        self._thread.join(90)
        assert not self._thread.is_alive(), "the task never ended"
        return self


def transfer(**kwargs: Any) -> EdcTransferOperator:
    kwargs.setdefault("transfer_type", "HttpData-PUSH")
    kwargs.setdefault("data_destination", {"type": "HttpData", "baseUrl": "http://sink.example"})
    kwargs.setdefault("fallback_check_interval", 3600)
    return EdcTransferOperator(
        task_id="transfer",
        contract_id="agreement-1",
        counter_party_address="http://provider/protocol",
        deferrable=True,
        **kwargs,
    )


def waiting_in_worker(op: Any, connector: FakeConnector, process: str = TP) -> None:
    """Until the process started and the operator waits for it in the worker."""
    wait_until(lambda: process in connector.states, 30, "the process's start")
    wait_until(lambda: op._waiting_on is not None and op._waiting_on[1] == process, 30, "the wait in the worker")


# -- transfer ---------------------------------------------------------------------------------------


def test_a_transfer_that_ends_within_defer_after_completes_without_deferring(
    receiver: TestClient, connector: FakeConnector
) -> None:
    op = transfer(defer_after=LONG)
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    assert post(receiver, envelope("TransferProcessStarted", TP)) == 200
    assert post(receiver, envelope("TransferProcessCompleted", TP)) == 200
    worker.join()
    assert worker.error is None, worker.error  # no TaskDeferred
    result = worker.result
    assert (result["transfer_process_id"], result["state"], result["source"]) == (TP, "COMPLETED", "callback")
    assert result["event_type"] == "TransferProcessCompleted"
    assert result["correlation_id"] == correlation_id_for("d", "r", "transfer", -1)
    assert [t["type"] for t in result["timeline"]] == ["TransferProcessStarted", "TransferProcessCompleted"]
    assert connector.calls("GET") == []  # callbacks only: the connector was not asked for the state
    assert op._waiting_on is None


def test_a_pull_transfer_started_within_defer_after_returns_the_started_result(
    receiver: TestClient, connector: FakeConnector
) -> None:
    op = transfer(transfer_type="HttpData-PULL", data_destination=None, defer_after=LONG)
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    edr = {
        "type": "https://w3id.org/idsa/v4.1/HTTP",
        "endpoint": "http://provider/public",
        "authorization": "edr-secret",
    }
    assert post(receiver, envelope("TransferProcessStarted", TP, dataAddress=edr)) == 200
    worker.join()
    assert worker.error is None, worker.error
    assert (worker.result["state"], worker.result["source"]) == ("STARTED", "callback")
    assert "edr-secret" not in str(worker.result)  # never the EDR or its token


def test_a_transfer_terminated_within_defer_after_fails_naming_it_and_the_reason(
    receiver: TestClient, connector: FakeConnector
) -> None:
    op = transfer(defer_after=LONG)
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    assert post(receiver, envelope("TransferProcessTerminated", TP, reason="HTTP source answered 500")) == 200
    worker.join()
    err = worker.error
    assert isinstance(err, EdcTransferFailed), err
    assert (err.transfer_process_id, err.state, err.reason) == (TP, "TERMINATED", "HTTP source answered 500")
    assert TP in str(err)
    assert "HTTP source answered 500" in str(err)


def deferred_kwargs(op: EdcTransferOperator) -> tuple[TaskDeferred, dict[str, Any]]:
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        op.execute({"ti": ti("transfer")})  # type: ignore[arg-type]
    classpath, kwargs = info.value.trigger.serialize()
    assert classpath == "airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger"
    assert before <= kwargs["waiting_since"] <= time.time()
    return info.value, kwargs


def test_a_transfer_still_running_after_defer_after_defers_as_today(edc_config: str, connector: FakeConnector) -> None:
    """No event within the window: the task defers with the trigger and kwargs of ``defer_after=0``; the
    early-event hold (apache/airflow#71580) is counted from the deferral, not from the start."""
    waited, kwargs = deferred_kwargs(transfer(defer_after=0.3, timeout=120))
    deferred_at = time.time()
    connector.states.clear()
    today, today_kwargs = deferred_kwargs(transfer(defer_after=0, timeout=120))
    timing = ("waiting_since", "deadline", "not_before")
    assert {k: v for k, v in kwargs.items() if k not in timing} == {
        k: v for k, v in today_kwargs.items() if k not in timing
    }
    assert kwargs["correlation_id"] == correlation_id_for("d", "r", "transfer", -1)
    assert (kwargs["transfer_process_id"], kwargs["wait_for"], kwargs["terminate_on_kill"]) == (TP, "completed", True)
    assert kwargs["deadline"] == pytest.approx(kwargs["waiting_since"] + 120)  # counted from the start
    assert kwargs["not_before"] - kwargs["waiting_since"] >= 0.3 + 5  # the worker's wait, then the hold
    assert kwargs["not_before"] <= deferred_at + 6
    assert (waited.method_name, waited.timeout, waited.kwargs) == (today.method_name, today.timeout, today.kwargs)


def test_defer_after_zero_defers_at_once_even_with_the_event_already_stored(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """The connector sends Completed before it even answers the start: with ``defer_after=0`` the task
    still defers (today's behaviour); with a window it completes in the worker."""
    connector.on_start = lambda request: post_to_callback_address(
        receiver, request, envelope("TransferProcessCompleted", TP, envelope_id="env-completed")
    )
    with pytest.raises(TaskDeferred) as info:
        transfer(defer_after=0).execute({"ti": ti("transfer")})  # type: ignore[arg-type]
    assert info.value.trigger.transfer_process_id == TP
    assert [e.envelope_id for e in get_store().events(process_id=TP)] == ["env-completed"]

    result = transfer(defer_after=LONG).execute({"ti": ti("transfer")})  # type: ignore[arg-type]
    assert (result["state"], result["source"]) == ("COMPLETED", "callback")


def test_an_untrusted_event_within_defer_after_does_not_complete_the_task(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """Another task's token: before the binding the connector-side race stores it, after it the receiver
    refuses it; neither ends the wait, and the task defers after the window."""
    forged = envelope("TransferProcessCompleted", TP, envelope_id="env-forged-early")
    connector.on_start = lambda _: post(receiver, forged, task_id="another-task")  # stored: not bound yet
    op = transfer(defer_after=1.0)
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    late = envelope("TransferProcessTerminated", TP, reason="forged")
    assert post(receiver, late, task_id="another-task") == 403  # bound now: refused
    worker.join()
    assert isinstance(worker.error, TaskDeferred), worker.error
    assert [e.envelope_id for e in get_store().events(process_id=TP)] == ["env-forged-early"]

    # the same untrusted event again in a window long enough for any event: still nothing ends the wait
    # until the task's own callback comes
    op = transfer(defer_after=LONG)
    connector.on_start = None
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    assert post(receiver, envelope("TransferProcessCompleted", TP, envelope_id="env-own")) == 200
    worker.join()
    assert worker.error is None, worker.error
    assert [t["envelope_id"] for t in worker.result["timeline"]] == ["env-own"]


def test_killing_the_task_while_it_waits_before_deferring_terminates_its_transfer(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """Within the window the worker runs the task: its on_kill terminates the transfer, as when it waits in
    the worker for good (``deferrable=False``)."""
    op = transfer(defer_after=LONG)
    worker = Worker(op, "transfer")
    waiting_in_worker(op, connector)
    op.on_kill()
    [(_, _, path, body)] = connector.calls("POST", "/terminate")
    assert path == f"/management/v3/transferprocesses/{TP}/terminate"
    assert body["reason"] == "Airflow task transfer was killed"
    assert post(receiver, envelope("TransferProcessTerminated", TP, reason="Airflow task transfer was killed")) == 200
    worker.join()
    assert isinstance(worker.error, EdcTransferFailed), worker.error


def test_defer_after_defaults_to_the_config_and_rejects_negative_seconds(
    edc_config: str, connector: FakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__DEFER_AFTER", "0.2")
    started = time.monotonic()
    with pytest.raises(TaskDeferred):
        transfer().execute({"ti": ti("transfer")})  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.2  # it waited the configured window first
    with pytest.raises(ValueError, match="defer_after must be a number of seconds >= 0, got -1"):
        transfer(defer_after=-1)
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__DEFER_AFTER", "soon")
    with pytest.raises(ValueError, match=r"\[edc_callbacks\] defer_after must be a number of seconds"):
        transfer().execute({"ti": ti("transfer")})  # type: ignore[arg-type]


# -- negotiation, and the negotiated transfer's two steps ------------------------------------------


def finalized(process_id: str = CN, agreement: str = "agreement-9") -> dict[str, Any]:
    return {
        "id": f"env-finalized-{process_id}",
        "at": int(time.time() * 1000),
        "type": "ContractNegotiationFinalized",
        "payload": {
            "contractNegotiationId": process_id,
            "counterPartyId": "provider",
            "contractAgreement": {"id": agreement, "assetId": "demo-asset"},
        },
    }


def negotiation_operator(**kwargs: Any) -> EdcContractNegotiationOperator:
    return EdcContractNegotiationOperator(
        task_id="negotiate",
        asset_id="demo-asset",
        counter_party_address="http://provider/protocol",
        counter_party_id="provider",
        offer=OFFER,
        fallback_check_interval=3600,
        deferrable=True,
        **kwargs,
    )


def test_a_negotiation_that_ends_within_defer_after_completes_without_deferring(
    receiver: TestClient, connector: FakeConnector
) -> None:
    op = negotiation_operator(defer_after=LONG)
    worker = Worker(op, "negotiate")
    waiting_in_worker(op, connector, CN)
    assert post(receiver, finalized(), task_id="negotiate") == 200
    worker.join()
    assert worker.error is None, worker.error
    result = worker.result
    assert (result["contract_negotiation_id"], result["contract_agreement_id"]) == (CN, "agreement-9")
    assert (result["state"], result["source"]) == ("FINALIZED", "callback")


def test_a_negotiation_terminated_within_defer_after_fails_with_the_reason(
    receiver: TestClient, connector: FakeConnector
) -> None:
    op = negotiation_operator(defer_after=LONG)
    worker = Worker(op, "negotiate")
    waiting_in_worker(op, connector, CN)
    body = {
        "id": "env-terminated",
        "at": int(time.time() * 1000),
        "type": "ContractNegotiationTerminated",
        "payload": {"contractNegotiationId": CN, "counterPartyId": "provider", "errorDetail": "policy not met"},
    }
    connector.states[CN] = "TERMINATED"
    assert post(receiver, body, task_id="negotiate") == 200
    worker.join()
    assert isinstance(worker.error, EdcNegotiationFailed), worker.error
    assert CN in str(worker.error)


def test_a_negotiation_still_running_after_defer_after_defers_to_its_trigger(
    edc_config: str, connector: FakeConnector
) -> None:
    with pytest.raises(TaskDeferred) as info:
        negotiation_operator(defer_after=0.2).execute({"ti": ti("negotiate")})  # type: ignore[arg-type]
    assert isinstance(info.value.trigger, EdcNegotiationTrigger)
    assert info.value.trigger.contract_negotiation_id == CN
    assert info.value.method_name == "execute_complete"


def negotiated(**kwargs: Any) -> EdcNegotiatedTransferOperator:
    return EdcNegotiatedTransferOperator(
        task_id="negotiate_and_transfer",
        asset_id="demo-asset",
        counter_party_address="http://provider/protocol",
        counter_party_id="provider",
        offer=OFFER,
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "http://sink.example"},
        fallback_check_interval=3600,
        deferrable=True,
        **kwargs,
    )


def answer_each_start(receiver: TestClient, bodies: dict[str, dict[str, Any]]) -> Callable[[Any], None]:
    """The connector's ``on_start``: post the body for the started kind to the request's callback address."""

    def on_start(request: Any) -> None:
        kind = "negotiation" if "policy" in request else "transfer"
        if kind in bodies:
            post_to_callback_address(receiver, request, bodies[kind])

    return on_start


def test_a_negotiated_transfer_whose_both_steps_end_quickly_never_defers(
    receiver: TestClient, connector: FakeConnector
) -> None:
    connector.on_start = answer_each_start(
        receiver, {"negotiation": finalized(), "transfer": envelope("TransferProcessCompleted", TP)}
    )
    result = negotiated(defer_after=LONG).execute({"ti": ti("negotiate_and_transfer")})  # type: ignore[arg-type]
    assert (result["transfer_process_id"], result["state"], result["source"]) == (TP, "COMPLETED", "callback")
    assert result["negotiation"]["contract_agreement_id"] == "agreement-9"
    [transfer_request] = [r[3] for r in connector.calls("POST", "/transferprocesses")]
    assert transfer_request["contractId"] == "agreement-9"


def test_a_negotiated_transfer_defers_on_the_step_that_outlasts_defer_after(
    receiver: TestClient, connector: FakeConnector
) -> None:
    """The negotiation ends in the worker; the transfer does not: the task defers on the transfer, carrying
    the negotiation's result as today."""
    connector.on_start = answer_each_start(receiver, {"negotiation": finalized()})
    with pytest.raises(TaskDeferred) as info:
        negotiated(defer_after=0.5).execute({"ti": ti("negotiate_and_transfer")})  # type: ignore[arg-type]
    assert isinstance(info.value.trigger, EdcCallbackTrigger)
    assert info.value.trigger.transfer_process_id == TP
    assert info.value.method_name == "execute_complete"
    assert info.value.kwargs["negotiation"]["contract_agreement_id"] == "agreement-9"
