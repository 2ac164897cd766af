"""The callback bodies and Management API answers the compatibility suite captured from each listed EDC
version (tests/fixtures/edc/<version>/, written by tests/compat with EDC_COMPAT_CAPTURE=1), read through
the receiver's models and the trigger logic, so that every version's shapes stay covered without
connectors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from airflow_edc_callbacks.connector_versions import profile
from airflow_edc_callbacks.models import (
    EndpointDataReference,
    EventEnvelope,
    WaitFor,
    normalize_jsonld,
    terminal_outcome,
)
from demo import edc_versions
from tests.helpers import EDC_FIXTURES

FIXTURES = EDC_FIXTURES
CAPTURED = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and re.fullmatch(r"\d+\.\d+\.\d+", p.name))


def load(version: str, *parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(version, *parts).read_text(encoding="utf-8"))


def callbacks(version: str, kind: str) -> dict[str, EventEnvelope]:
    """The captured callbacks of one process (``push``, ``pull``, ``negotiation``), parsed, by event type."""
    parsed = {}
    for path in sorted((FIXTURES / version / "callbacks").glob(f"{kind}_*.json")):
        envelope = EventEnvelope.model_validate(json.loads(path.read_text(encoding="utf-8")))
        parsed[envelope.type] = envelope
    return parsed


def test_every_listed_version_has_captured_fixtures() -> None:
    assert set(CAPTURED) == set(edc_versions.VERSIONS)


@pytest.mark.parametrize("version", CAPTURED)
def test_push_callbacks_parse_and_end_the_wait(version: str) -> None:
    push = callbacks(version, "push")
    sequence = [e["type"] for e in load(version, "callbacks", "sequence.json")["push"]]
    assert set(sequence) == set(push)
    process_ids = {e.process_id for e in push.values()}
    assert len(process_ids) == 1
    assert None not in process_ids
    outcomes = [terminal_outcome(t, WaitFor.COMPLETED) for t in sequence]
    assert "success" in outcomes
    assert "failed" not in outcomes
    assert outcomes.index("success") == sequence.index("TransferProcessCompleted")
    answer = load(version, "mgmt", "transferprocess_push.json")
    assert answer["status"] == 200
    assert normalize_jsonld(answer["body"])["state"] == "COMPLETED"
    assert normalize_jsonld(answer["body"])["@id"] in process_ids


@pytest.mark.parametrize("version", CAPTURED)
def test_pull_started_callback_carries_the_edr(version: str) -> None:
    pull = callbacks(version, "pull")
    started = pull["TransferProcessStarted"]
    assert terminal_outcome(started.type, WaitFor.STARTED) == "success"
    assert started.process_id is not None
    address = started.model_dump()["payload"]["dataAddress"]
    edr = EndpointDataReference.from_data_address(started.process_id, address, source="callback")
    assert edr.endpoint.startswith("http://localhost:19195/public")
    assert edr.authorization == "***"  # the token was replaced when captured


@pytest.mark.parametrize("version", CAPTURED)
def test_negotiation_callbacks_finalize_with_the_versions_protocol(version: str) -> None:
    negotiation = callbacks(version, "negotiation")
    finalized = negotiation["ContractNegotiationFinalized"]
    assert finalized.process_id is not None
    answer = normalize_jsonld(load(version, "mgmt", "contractnegotiation.json")["body"])
    assert answer["state"] == "FINALIZED"
    assert answer["protocol"] == profile(version).dsp_protocol


@pytest.mark.parametrize("version", CAPTURED)
def test_unknown_process_answer_is_an_error_list(version: str) -> None:
    answer = load(version, "mgmt", "error_not_found.json")
    assert answer["status"] == 404
    assert isinstance(answer["body"], list)
    assert answer["body"][0]["type"] == "ObjectNotFound"
