"""The operators warn in the task log, once per execution, when ``[edc_callbacks] callback_base_url`` is not
set and the callback address falls back to Airflow's ``[api] base_url``. The connector's answers are the
real 0.15.1 bodies of tests/fixtures/edc (the start-and-defer path runs on real connectors in tests/e2e)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.operators import EdcNegotiatedTransferOperator, EdcTransferOperator
from tests.airflow_compat import TaskDeferred
from tests.conftest import SIGNING_KEY
from tests.helpers import EDC_FIXTURES

WARNING = "[edc_callbacks] callback_base_url is not set"
CONN = json.dumps({"conn_type": "edc", "host": "http://consumer.example:29193/management", "password": "key"})
TI = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)
NEGOTIATION = {
    "contract_negotiation_id": "cn-1",
    "contract_agreement_id": "agreement-1",
    "state": "FINALIZED",
    "source": "callback",
    "timeline": [],
}


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", CONN)
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY", SIGNING_KEY.decode())
    monkeypatch.delenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.internal:8080")


class Connector:
    """An httpx transport answering as a 0.15.1 consumer connector did; records the callback addresses."""

    def __init__(self) -> None:
        self.catalog = json.loads((EDC_FIXTURES / "mgmt_catalog_filtered.json").read_text())
        self.callback_uris: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/catalog/request"):
            return httpx.Response(200, json=self.catalog)
        body = json.loads(request.content)
        self.callback_uris += [c["uri"] for c in body.get("callbackAddresses", [])]
        new_id = "cn-1" if "contractnegotiations" in request.url.path else "tp-1"
        return httpx.Response(200, json={"@type": "IdResponse", "@id": new_id})


def _with_connector(op: Any, connector: Connector, monkeypatch: pytest.MonkeyPatch) -> Any:
    hook = EdcManagementHook(transport=httpx.MockTransport(connector))
    monkeypatch.setattr(op, "_hook", lambda: hook)
    return op


def _transfer() -> EdcTransferOperator:
    return EdcTransferOperator(
        task_id="transfer",
        contract_id="contract-1",
        counter_party_address="http://provider.example/protocol/2025-1",
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": "http://sink"},
        deferrable=True,
    )


def test_transfer_warns_naming_the_fallback_url_and_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connector = Connector()
    op = _with_connector(_transfer(), connector, monkeypatch)
    with pytest.raises(TaskDeferred):
        op.execute({"ti": TI})
    logged = capsys.readouterr().out  # Airflow's structlog writes task logs to stdout here
    assert logged.count(WARNING) == 1
    assert "http://airflow.internal:8080/edc-callbacks" in logged
    assert "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL" in logged
    assert connector.callback_uris[0].startswith("http://airflow.internal:8080/edc-callbacks/callbacks/")


def test_no_warning_when_callback_base_url_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://receiver.internal:8099")
    connector = Connector()
    op = _with_connector(_transfer(), connector, monkeypatch)
    with pytest.raises(TaskDeferred):
        op.execute({"ti": TI})
    assert WARNING not in capsys.readouterr().out
    assert connector.callback_uris[0].startswith("http://receiver.internal:8099/callbacks/")


def test_one_warning_per_execution_of_a_task_that_starts_two_processes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The negotiation and the transfer of one operator object (as when it waits in the worker) warn once;
    the resume in a new execution (a new operator object, as the worker builds it) warns again."""

    def negotiated() -> EdcNegotiatedTransferOperator:
        op = EdcNegotiatedTransferOperator(
            task_id="negotiate_and_transfer",
            asset_id="demo-asset",
            counter_party_address="http://provider.example/protocol/2025-1",
            counter_party_id="provider",
            transfer_type="HttpData-PUSH",
            data_destination={"type": "HttpData", "baseUrl": "http://sink"},
            deferrable=True,
        )
        return _with_connector(op, connector, monkeypatch)

    connector = Connector()
    op = negotiated()
    with pytest.raises(TaskDeferred):
        op.execute({"ti": TI})
    with pytest.raises(TaskDeferred):
        op.negotiation_complete({"ti": TI}, {"status": "success", **NEGOTIATION})
    assert capsys.readouterr().out.count(WARNING) == 1
    assert len(connector.callback_uris) == 2

    with pytest.raises(TaskDeferred):
        negotiated().negotiation_complete({"ti": TI}, {"status": "success", **NEGOTIATION})
    assert capsys.readouterr().out.count(WARNING) == 1
