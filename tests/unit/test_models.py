from __future__ import annotations

import pytest
from pydantic import ValidationError

from airflow_edc_callbacks.models import (
    EDC_NAMESPACE,
    EventEnvelope,
    WaitFor,
    as_list,
    jsonld_get,
    normalize_jsonld,
    resolve_wait_for,
    state_outcome,
    terminal_outcome,
)
from tests.helpers import envelope


def test_envelope_keeps_unknown_fields_and_accepts_old_payloads() -> None:
    body = envelope("TransferProcessStarted", "tp-9", futureField={"x": 1})
    del body["payload"]["participantContextId"]  # EDC < 0.15 omits it
    del body["payload"]["protocol"]
    parsed = EventEnvelope.model_validate(body)
    assert parsed.payload.process_id == "tp-9"
    assert parsed.payload.model_extra == {"futureField": {"x": 1}}
    assert parsed.payload.participantContextId is None


def test_negotiation_event_process_id() -> None:
    body = {"id": "e1", "at": 1, "type": "ContractNegotiationFinalized", "payload": {"contractNegotiationId": "cn-1"}}
    assert EventEnvelope.model_validate(body).payload.process_id == "cn-1"


@pytest.mark.parametrize("missing", ["id", "at", "type", "payload"])
def test_envelope_requires_core_fields(missing: str) -> None:
    body = envelope()
    del body[missing]
    with pytest.raises(ValidationError):
        EventEnvelope.model_validate(body)


def test_normalize_jsonld_all_key_forms_and_single_arrays() -> None:
    doc = {
        "@id": "tp-1",
        "edc:state": "STARTED",
        f"{EDC_NAMESPACE}assetId": ["asset-1"],
        "callbackAddresses": [{"uri": "http://x"}, {"uri": "http://y"}],
        "createdAt": {"@value": 17},
    }
    assert normalize_jsonld(doc) == {
        "@id": "tp-1",
        "state": "STARTED",
        "assetId": "asset-1",
        "callbackAddresses": [{"uri": "http://x"}, {"uri": "http://y"}],
        "createdAt": 17,
    }
    assert jsonld_get({"edc:state": ["COMPLETED"]}, "state") == "COMPLETED"
    assert jsonld_get({}, "state", "none") == "none"
    assert as_list("a") == ["a"]
    assert as_list(None) == []


@pytest.mark.parametrize(
    ("wait_for", "transfer_type", "expected"),
    [
        ("auto", "HttpData-PULL", WaitFor.STARTED),
        ("auto", "HttpData-PUSH", WaitFor.COMPLETED),
        ("auto", "AmazonS3-PUSH", WaitFor.COMPLETED),
        ("completed", "HttpData-PULL", WaitFor.COMPLETED),
        ("started", "HttpData-PUSH", WaitFor.STARTED),
    ],
)
def test_resolve_wait_for(wait_for: str, transfer_type: str, expected: WaitFor) -> None:
    assert resolve_wait_for(wait_for, transfer_type) is expected


def test_resolve_wait_for_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="wait_for must be one of"):
        resolve_wait_for("finished", "HttpData-PUSH")


def test_terminal_rules() -> None:
    assert terminal_outcome("TransferProcessStarted", WaitFor.COMPLETED) is None
    assert terminal_outcome("TransferProcessStarted", WaitFor.STARTED) == "success"
    assert terminal_outcome("TransferProcessCompleted", WaitFor.STARTED) == "success"
    assert terminal_outcome("TransferProcessTerminated", WaitFor.STARTED) == "failed"
    assert terminal_outcome("TransferProcessRequested", WaitFor.COMPLETED) is None
    assert state_outcome("started", WaitFor.STARTED) == "success"
    assert state_outcome("STARTED", WaitFor.COMPLETED) is None
    assert state_outcome("TERMINATED", WaitFor.COMPLETED) == "failed"
    assert state_outcome("DEPROVISIONED", WaitFor.COMPLETED) == "failed"  # cannot tell; never a false success
