"""A retry of a transfer task and the transfer an earlier try started: still running, it is waited for;
COMPLETED with no try having taken its result (Airflow failed the try after its trigger fired), its result
is taken instead of starting a second transfer; once a try took it (a user clears a successful task),
a new transfer starts. Through the operator, on both store back-ends; the connector's answers are
EDC 0.15.1's bodies (tests/fixtures/edc)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.operators import EdcTransferOperator
from airflow_edc_callbacks.store import get_store
from airflow_edc_callbacks.tokens import correlation_id_for
from tests.airflow_compat import TaskDeferred
from tests.helpers import EDC_FIXTURES

FIXTURES = EDC_FIXTURES
CONN = json.dumps({"conn_type": "edc", "host": "http://consumer.example:29193/management", "password": "key"})
EARLIER = "tp-earlier"
NEW = "tp-new"


@pytest.fixture(autouse=True)
def edc_connection(monkeypatch: pytest.MonkeyPatch, edc_config: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", CONN)
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")


class Connector:
    """The consumer's Management API: lists the earlier try's transfer in ``state``, starts :data:`NEW`."""

    def __init__(self, state: str | None) -> None:
        self.state = state
        self.started = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/transferprocesses/request"):
            if self.state is None:
                return httpx.Response(200, json=[])
            body = json.loads((FIXTURES / "mgmt_transferprocess_completed.json").read_text())
            return httpx.Response(200, json=[{**body, "@id": EARLIER, "state": self.state}])
        if request.method == "POST" and request.url.path.endswith("/transferprocesses"):
            self.started += 1
            return httpx.Response(200, json={"@type": "IdResponse", "@id": NEW})
        return httpx.Response(404, json=[{"message": f"unexpected {request.method} {request.url.path}"}])


def run_try(
    connector: Connector,
    try_number: int,
    monkeypatch: pytest.MonkeyPatch,
    transfer_type: str = "HttpData-PUSH",
    *,
    retries: int = 2,
    max_tries: int | None = None,
) -> str:
    """Run ``execute`` for this try; return the transfer process id it defers on. ``max_tries`` is the task
    instance's as Airflow keeps it (``retries`` until a clear raises it); ``None``: a task instance without
    one."""
    push = transfer_type.endswith("-PUSH")
    op = EdcTransferOperator(
        task_id="transfer",
        contract_id="contract-1",
        counter_party_address="http://provider.example/protocol/2025-1",
        transfer_type=transfer_type,
        data_destination={"type": "HttpData", "baseUrl": "http://sink.example"} if push else None,
        deferrable=True,
        defer_after=0,  # the transfer a try waits for is read off its deferral
        retries=retries,
    )
    hook = EdcManagementHook(transport=httpx.MockTransport(connector))
    monkeypatch.setattr(op, "_hook", lambda: hook)
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="transfer", map_index=-1, try_number=try_number)
    if max_tries is not None:
        ti.max_tries = max_tries
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": ti})
    return str(deferred.value.trigger.transfer_process_id)


def complete(process_id: str, correlation_id: str) -> dict[str, Any]:
    """Resume the task as its trigger would on the COMPLETED callback."""
    op = EdcTransferOperator(
        task_id="transfer",
        contract_id="contract-1",
        counter_party_address="http://provider.example/protocol/2025-1",
        transfer_type="HttpData-PUSH",
        deferrable=True,
    )
    event = {
        "status": "success",
        "transfer_process_id": process_id,
        "correlation_id": correlation_id,
        "state": "COMPLETED",
        "event_type": "TransferProcessCompleted",
        "source": "callback",
        "timeline": [],
    }
    return op.execute_complete({}, event)


CORRELATION = correlation_id_for("d", "r", "transfer", -1)


def test_a_retry_takes_the_completed_transfer_whose_result_no_try_took(monkeypatch: pytest.MonkeyPatch) -> None:
    get_store(waiting=True).bind(EARLIER, CORRELATION)  # try 1 started it; its trigger fired; Airflow failed try 1
    connector = Connector("COMPLETED")

    assert run_try(connector, 2, monkeypatch, max_tries=2) == EARLIER
    assert connector.started == 0  # no second transfer

    assert complete(EARLIER, CORRELATION)["transfer_process_id"] == EARLIER  # try 2 takes the result
    # a user clears the successful task: the next try starts a new transfer
    assert run_try(connector, 3, monkeypatch, max_tries=2 + 2) == NEW
    assert connector.started == 1


def test_a_retry_takes_the_result_again_when_airflow_failed_the_try_that_took_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Try 1's resume ran and took the result, then the api-server refused its success: the scheduler had
    failed the try already (apache/airflow#66374, "Task Instance not found"). Try 2, a retry (max_tries
    as created), takes the same result; after a user's clear (max_tries raised) a new transfer starts."""
    get_store(waiting=True).bind(EARLIER, CORRELATION)
    assert complete(EARLIER, CORRELATION)["transfer_process_id"] == EARLIER  # try 1 took it
    connector = Connector("COMPLETED")

    assert run_try(connector, 2, monkeypatch, retries=2, max_tries=2) == EARLIER
    assert connector.started == 0  # no second transfer
    assert complete(EARLIER, CORRELATION)["transfer_process_id"] == EARLIER  # try 2 succeeds on it

    # a user clears the successful task: Airflow raises max_tries to try_number + retries
    assert run_try(connector, 3, monkeypatch, retries=2, max_tries=2 + 2) == NEW
    assert connector.started == 1


def test_a_retry_of_a_task_instance_without_max_tries_keeps_a_taken_result_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_store(waiting=True).bind(EARLIER, CORRELATION)
    complete(EARLIER, CORRELATION)
    connector = Connector("COMPLETED")
    assert run_try(connector, 2, monkeypatch, max_tries=None) == NEW
    assert connector.started == 1


def test_a_retry_still_waits_for_a_running_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = Connector("STARTED")
    assert run_try(connector, 2, monkeypatch, max_tries=2) == EARLIER
    assert connector.started == 0


@pytest.mark.parametrize(
    ("bound_to", "state"),
    [
        (None, "COMPLETED"),  # the store does not know it (e.g. purged): counts as taken
        ("another-task-instance", "COMPLETED"),  # bound to another task instance
        (CORRELATION, "TERMINATED"),  # a terminated transfer is never waited for
        (CORRELATION, None),  # the connector knows no earlier transfer
    ],
)
def test_a_retry_starts_a_new_transfer_otherwise(
    monkeypatch: pytest.MonkeyPatch, bound_to: str | None, state: str | None
) -> None:
    if bound_to is not None:
        get_store(waiting=True).bind(EARLIER, bound_to)
    connector = Connector(state)
    assert run_try(connector, 2, monkeypatch, max_tries=2) == NEW
    assert connector.started == 1


def test_the_first_try_never_looks_for_an_earlier_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    get_store(waiting=True).bind(EARLIER, CORRELATION)
    connector = Connector("COMPLETED")
    assert run_try(connector, 1, monkeypatch) == NEW


def test_a_pull_retry_never_takes_a_completed_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PULL task's result is the EDR of a STARTED transfer; a COMPLETED one's EDR is revoked."""
    get_store(waiting=True).bind(EARLIER, CORRELATION)
    connector = Connector("COMPLETED")
    assert run_try(connector, 2, monkeypatch, transfer_type="HttpData-PULL", max_tries=2) == NEW
    assert connector.started == 1
