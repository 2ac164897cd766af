"""EdcTransferOperator's input checks and resume logic (its start-and-defer path runs on real
connectors in tests/e2e)."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_edc_callbacks.exceptions import EdcTransferFailed, TriggerEventError
from airflow_edc_callbacks.operators import EdcTransferOperator
from tests.helpers import EDC_FIXTURES

FIXTURES = EDC_FIXTURES
CONN = json.dumps({"conn_type": "edc", "host": "http://consumer.example:29193/management", "password": "key"})


@pytest.fixture(autouse=True)
def edc_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", CONN)


def operator(**kwargs: Any) -> EdcTransferOperator:
    defaults: dict[str, Any] = {
        "task_id": "transfer",
        "contract_id": "contract-1",
        "counter_party_address": "http://provider.example/protocol/2025-1",
        "transfer_type": "HttpData-PUSH",
        "deferrable": True,
    }
    defaults.update(kwargs)
    return EdcTransferOperator(**defaults)


def event(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "status": "success",
        "transfer_process_id": "tp-1",
        "correlation_id": "c1",
        "state": "COMPLETED",
        "event_type": "TransferProcessCompleted",
        "reason": None,
        "source": "callback",
        "asset_id": "demo-asset",
        "contract_id": "contract-1",
        "timeline": [
            {"type": "TransferProcessStarted", "at": 1_700_000_000_000, "received_at": 1_700_000_000_010},
            {"type": "TransferProcessCompleted", "at": 1_700_000_001_000, "received_at": 1_700_000_001_010},
        ],
    }
    payload.update(overrides)
    return payload


def test_template_fields_cover_request() -> None:
    assert set(EdcTransferOperator.template_fields) == {
        "contract_id",
        "counter_party_address",
        "transfer_type",
        "data_destination",
        "protocol",
        "asset_id",
        "private_properties",
        "wait_for",
        "edc_conn_id",
        "counter_party_id",  # for lineage only
    }


def test_success_returns_result_and_logs_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    result = operator().execute_complete({}, event())
    assert result == {
        "transfer_process_id": "tp-1",
        "state": "COMPLETED",
        "asset_id": "demo-asset",
        "contract_id": "contract-1",
        "event_type": "TransferProcessCompleted",
        "source": "callback",
        "correlation_id": "c1",
        "timeline": event()["timeline"],
    }
    logged = capsys.readouterr().out  # Airflow's structlog writes task logs to stdout here
    assert "tp-1: TransferProcessStarted at 2023-11-14T22:13:20.000+00:00 (received 2023-11-14T22:13:20.010" in logged
    assert "tp-1: TransferProcessCompleted at 2023-11-14T22:13:21.000+00:00" in logged


def test_terminated_raises_with_reason_id_and_connector() -> None:
    with pytest.raises(EdcTransferFailed) as info:
        operator().execute_complete({}, event(status="failed", state="TERMINATED", reason="HTTP source answered 500"))
    err = info.value
    assert (err.transfer_process_id, err.state, err.reason) == ("tp-1", "TERMINATED", "HTTP source answered 500")
    assert err.connector_url == "http://consumer.example:29193/management"
    assert str(err) == (
        "EDC transfer process tp-1 on http://consumer.example:29193/management ended TERMINATED: "
        "HTTP source answered 500"
    )


@pytest.mark.parametrize("bad", [None, {}, {"status": "maybe", "transfer_process_id": "x"}])
def test_unknown_event_rejected(bad: dict[str, Any] | None) -> None:
    with pytest.raises(TriggerEventError):
        operator().execute_complete({}, bad)


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"status": "success"}, "transfer_process_id: Field required"),
        ({"status": "success", "transfer_process_id": ""}, "transfer_process_id: String should have at least 1"),
        ({"status": "done", "transfer_process_id": "tp-1"}, "status: Input should be 'success', 'failed' or 'timeout'"),
        ({"status": "success", "transfer_process_id": 7}, "transfer_process_id: Input should be a valid string"),
        ({"status": "failed", "transfer_process_id": "tp-1", "source": "rumour"}, "source: Input should be"),
        ({"status": "success", "transfer_process_id": "tp-1", "timeline": [{"type": "x"}]}, "timeline.0.at: Field"),
        ({"status": "timeout", "transfer_process_id": "tp-1", "waited_seconds": "long"}, "waited_seconds: Input"),
        (["success"], "no JSON object"),
    ],
)
def test_malformed_event_is_a_trigger_event_error_naming_the_field(bad: Any, named: str) -> None:
    """A malformed payload on resume is the typed error naming what was wrong, never a KeyError."""
    with pytest.raises(TriggerEventError) as info:
        operator().execute_complete({}, bad)
    assert named in str(info.value)
    assert str(info.value).startswith("Task transfer resumed with")


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "success"},
        {"status": "failed", "transfer_process_id": "tp-1"},  # a transfer's event, not a negotiation's
        {"status": "success", "contract_negotiation_id": "cn-1", "contract_agreement_id": ["a"]},
    ],
)
def test_malformed_negotiation_event_is_a_trigger_event_error(bad: dict[str, Any]) -> None:
    from airflow_edc_callbacks.operators import EdcContractNegotiationOperator

    op = EdcContractNegotiationOperator(
        task_id="negotiate", asset_id="a", counter_party_address="http://p/protocol", counter_party_id="provider"
    )
    with pytest.raises(TriggerEventError, match="malformed NegotiationResult event: contract_"):
        op.execute_complete({}, bad)
    with pytest.raises(TriggerEventError, match="malformed NegotiationResult event"):
        negotiated().negotiation_complete({}, bad)


def test_malformed_found_event_of_the_sensor_is_a_trigger_event_error() -> None:
    from airflow_edc_callbacks.sensors import EdcTransferSensor

    sensor = EdcTransferSensor(task_id="wait", asset_id="demo-asset", deferrable=True)
    with pytest.raises(TriggerEventError, match="malformed WatchedEvent event: process_id: Field required"):
        sensor.transfer_found({}, {"event_type": "TransferProcessStarted"})  # type: ignore[arg-type]
    with pytest.raises(TriggerEventError, match="event_type: Input should be a valid string"):
        sensor.transfer_found({}, {"process_id": "tp-1", "event_type": None})  # type: ignore[arg-type]


def test_bad_wait_for_fails_before_any_request() -> None:
    op = operator(wait_for="whenever", edc_conn_id="does_not_exist")
    with pytest.raises(ValueError, match="wait_for must be one of"):
        op.execute({"ti": None})  # type: ignore[arg-type]


def test_numeric_timeout_is_seconds() -> None:
    assert operator(timeout=90).timeout.total_seconds() == 90


# -- EdcNegotiatedTransferOperator and EdcPullDataOperator ------------------------------------------------


def negotiated(**kwargs: Any) -> Any:
    from airflow_edc_callbacks.operators import EdcNegotiatedTransferOperator

    defaults: dict[str, Any] = {
        "task_id": "negotiate_and_transfer",
        "asset_id": "demo-asset",
        "counter_party_address": "http://provider.example/protocol/2025-1",
        "counter_party_id": "provider",
        "transfer_type": "HttpData-PULL",
        "deferrable": True,
    }
    defaults.update(kwargs)
    return EdcNegotiatedTransferOperator(**defaults)


NEGOTIATION = {
    "contract_negotiation_id": "cn-1",
    "contract_agreement_id": "agreement-1",
    "state": "FINALIZED",
    "source": "callback",
    "timeline": [],
}


def test_negotiated_transfer_keeps_its_transfer_type_and_templates_its_inputs() -> None:
    op = negotiated()
    assert op.transfer_type == "HttpData-PULL"
    assert {"asset_id", "counter_party_id", "offer", "destination", "path", "edc_conn_id"} <= set(op.template_fields)
    assert op._request_asset_id() is None  # the agreement names the asset; v4 requests have no assetId


def test_negotiated_transfer_result_carries_the_negotiation() -> None:
    result = negotiated(transfer_type="HttpData-PUSH").execute_complete({}, event(), negotiation=NEGOTIATION)
    assert result["negotiation"] == NEGOTIATION
    assert (result["transfer_process_id"], result["state"], result["source"]) == ("tp-1", "COMPLETED", "callback")
    assert "data" not in result  # nothing to fetch for PUSH


def test_negotiated_transfer_failure_still_names_the_transfer() -> None:
    with pytest.raises(EdcTransferFailed, match=r"EDC transfer process tp-1 .* ended TERMINATED: no data plane"):
        negotiated().execute_complete({}, event(status="failed", state="TERMINATED", reason="no data plane"))


def test_negotiation_failure_stops_before_any_transfer() -> None:
    from airflow_edc_callbacks.exceptions import EdcNegotiationFailed

    failed = {"status": "failed", "contract_negotiation_id": "cn-9", "state": "TERMINATED", "reason": "Not found"}
    with pytest.raises(EdcNegotiationFailed, match=r"contract negotiation cn-9 .* ended TERMINATED: Not found"):
        negotiated().negotiation_complete({}, failed)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"asset_id": ""}, "asset_id must not be empty"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"negotiation_timeout": -1}, "negotiation_timeout must be positive"),
        ({"wait_for": "whenever"}, "wait_for must be one of"),
        ({"transfer_type": "HttpData-PUSH", "destination": "/tmp/x"}, "destination is for PULL transfers"),
        ({"offer": "not json"}, "offer must be an ODRL offer as a JSON object"),
    ],
)
def test_bad_input_fails_before_any_request(kwargs: dict[str, Any], error: str) -> None:
    """Checked before a contract is negotiated (the connection does not even exist)."""
    with pytest.raises(ValueError, match=error):
        negotiated(edc_conn_id="does_not_exist", **kwargs).execute(
            {"ti": SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)}
        )


@pytest.mark.parametrize(
    ("offer", "parsed"),
    [
        (None, None),
        ("null", None),
        ("None", None),
        ("", None),
        ('{"@id": "o1", "@type": "Offer"}', {"@id": "o1", "@type": "Offer"}),
        ({"@id": "o2"}, {"@id": "o2"}),
    ],
)
def test_offer_as_mapping_or_rendered_json(offer: Any, parsed: Any) -> None:
    from airflow_edc_callbacks.operators.negotiation import parse_offer

    assert parse_offer(offer) == parsed


def test_negotiated_transfer_defers_twice_and_resumes_with_both_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """execute -> defer on the negotiation; its resume starts the transfer and defers again carrying the
    negotiation's result; the transfer's resume returns both. The connector's answers are the real
    0.15.1 bodies of tests/fixtures/edc."""
    import httpx

    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.triggers import EdcCallbackTrigger
    from airflow_edc_callbacks.triggers.negotiation import EdcNegotiationTrigger
    from tests.airflow_compat import TaskDeferred

    catalog = json.loads((FIXTURES / "mgmt_catalog_filtered.json").read_text())
    requests: list[tuple[str, str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        requests.append((request.method, request.url.path, body))
        if request.url.path.endswith("/catalog/request"):
            return httpx.Response(200, json=catalog)
        new_id = "cn-1" if "contractnegotiations" in request.url.path else "tp-1"
        return httpx.Response(200, json={"@type": "IdResponse", "@id": new_id})

    hook = EdcManagementHook(transport=httpx.MockTransport(answer))
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://airflow/edc-callbacks")
    op = negotiated(
        transfer_type="HttpData-PUSH", data_destination={"type": "HttpData", "baseUrl": "http://s"}, defer_after=0
    )
    monkeypatch.setattr(op, "_hook", lambda: hook)
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)

    with pytest.raises(TaskDeferred) as first:
        op.execute({"ti": ti})
    assert first.value.method_name == "negotiation_complete"
    # the trigger's deadline is the negotiation_timeout; Airflow's deferral time-out a later safety net
    assert first.value.timeout == op.negotiation_timeout + timedelta(seconds=60)
    deadline = first.value.trigger.deadline
    assert deadline is not None
    assert abs(deadline - first.value.trigger.waiting_since - op.negotiation_timeout.total_seconds()) < 1e-6
    assert isinstance(first.value.trigger, EdcNegotiationTrigger)
    assert first.value.trigger.contract_negotiation_id == "cn-1"
    assert [r[1].rsplit("/", 2)[-2:] for r in requests] == [["catalog", "request"], ["v3", "contractnegotiations"]]

    with pytest.raises(TaskDeferred) as second:
        op.negotiation_complete({"ti": ti}, {"status": "success", **NEGOTIATION})
    assert second.value.method_name == "execute_complete"
    carried = second.value.kwargs["negotiation"]
    assert (carried["contract_agreement_id"], carried["source"]) == ("agreement-1", "callback")
    assert isinstance(second.value.trigger, EdcCallbackTrigger)
    assert second.value.trigger.transfer_process_id == "tp-1"
    transfer_request = requests[-1][2]
    assert transfer_request["contractId"] == "agreement-1"
    assert "assetId" not in transfer_request
    assert len(requests) == 3  # no look for an earlier try's transfer on try 1

    result = op.execute_complete({"ti": ti}, event(), **second.value.kwargs)
    assert result["negotiation"] == carried
    assert result["state"] == "COMPLETED"


def test_pull_data_operator_checks_its_input_first() -> None:
    from airflow_edc_callbacks.operators import EdcPullDataOperator

    op = EdcPullDataOperator(task_id="fetch", transfer_process_id="", destination="/tmp/x", edc_conn_id="nope")
    with pytest.raises(ValueError, match="transfer_process_id and destination must not be empty"):
        op.execute({})  # type: ignore[arg-type]
