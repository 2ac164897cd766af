"""What the waiting engine knows about each kind of EDC process: a value object per kind.

A :class:`ProcessKind` holds the event-type prefix, the outcome of each event type and of each
connector state, the state-check call on the hook, the result's own fields and the labels. The engine
(:mod:`airflow_edc_callbacks.triggers.engine`) is the same for every kind.

EDC facts (``transfer-spi`` / ``contract-spi`` events, EDC 0.15 to 0.18): transfer events carry
``reason`` (terminated), ``assetId`` and ``contractId``; ``ContractNegotiationFinalized`` carries the
``contractAgreement`` (its ``id`` is the contract id for transfer requests) and
``ContractNegotiationTerminated`` carries no reason, so the connector's ``errorDetail`` is read once
(``GET /v3/contractnegotiations/{id}``) when the negotiation has ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.models import (
    TRANSFER_EVENT_PREFIX,
    Outcome,
    TransferEventType,
    WaitFor,
    jsonld_get,
    state_outcome,
    terminal_outcome,
)
from airflow_edc_callbacks.triggers.results import NegotiationResult, TransferResult, WaitResult

KindName = Literal["transfer", "negotiation"]

NEGOTIATION_EVENT_PREFIX = "ContractNegotiation"
"""Envelope ``type`` prefix of every contract negotiation event."""

TRANSFER_STALL_CAUSES = {
    "INITIAL": "the connector has not sent the transfer request yet (is its state machine running?)",
    "INITIATED": "the connector has not sent the transfer request yet (is its state machine running?)",
    "REQUESTING": "the provider did not answer (provider down or unreachable, no data plane for the transfer "
    "type, or a termination message that was lost)",
    "REQUESTED": "the provider did not answer (no data plane for the transfer type, provider down, or a "
    "termination message that was lost)",
    "SUSPENDED": "the transfer was suspended and nobody resumed it",
}
"""Usual causes of a transfer process that stays in a state (the stall warning)."""

NEGOTIATION_STALL_CAUSES = {
    "INITIAL": "the connector has not sent the contract request yet (is its state machine running?)",
    "REQUESTING": "the provider did not answer the contract request (provider down or unreachable)",
    "REQUESTED": "the provider did not answer the contract request (provider down, or its answer was lost)",
    "AGREED": "the consumer has not verified the agreement yet (is its state machine running?)",
    "VERIFYING": "the provider did not acknowledge the verification (provider down or unreachable)",
    "VERIFIED": "no finalization came from the provider (its finalization failed or was lost)",
}
"""Usual causes of a contract negotiation that stays in a state (the stall warning)."""

_STILL_COPYING = "the data plane is still copying the data, or it is stuck (PUSH: check the sink and the data plane)"

Details = dict[str, "str | None"]
"""A result's kind-specific fields (``asset_id``, ``contract_id``... ; ``reason``)."""


@dataclass(frozen=True)
class ProcessKind:
    """One kind of EDC process as the waiting engine sees it.

    :ivar name: ``transfer`` or ``negotiation`` (the operators' terminate calls use it too).
    :ivar label: for log lines, e.g. ``transfer process``.
    :ivar awaited: what the wait waits for, for the log (``completed``, ``started``, ``finalized``).
    :ivar event_prefix: the envelope ``type`` prefix of its events.
    :ivar event_outcomes: event type -> outcome, for the events that end the wait.
    :ivar state_outcomes: connector state -> outcome, for the states that end the wait.
    :ivar stall_causes: state -> its usual cause, for the stall warning.
    :ivar read: the state-check call: ``GET`` the process from the Management API.
    :ivar terminate: ``POST .../{id}/terminate`` with a reason.
    :ivar event_details: a callback payload -> the result's own fields.
    :ivar state_details: a state-check document -> the result's own fields (with ``reason``).
    :ivar result: the typed result model (its process-id field).
    :ivar reason_from_connector: a failure's callback carries no reason: read ``errorDetail`` once.
    :ivar undone_by: event type -> an event type that, later in the same batch, keeps it from ending
        the wait (a transfer's ``Started`` followed by ``Suspended``).
    """

    name: KindName
    label: str
    awaited: str
    event_prefix: str
    event_outcomes: Mapping[str, Outcome]
    state_outcomes: Mapping[str, Outcome]
    stall_causes: Mapping[str, str]
    read: Callable[[EdcManagementHook, str], Awaitable[dict[str, Any]]]
    terminate: Callable[[EdcManagementHook, str, str], Awaitable[None]]
    event_details: Callable[[Mapping[str, Any]], Details]
    state_details: Callable[[Mapping[str, Any]], Details]
    result: type[WaitResult]
    reason_from_connector: bool = False
    undone_by: Mapping[str, str] = field(default_factory=dict)

    def state_of(self, event_type: str) -> str:
        """The state an event of this kind reports, e.g. ``TransferProcessRequested`` -> ``REQUESTED``."""
        return event_type[len(self.event_prefix) :].upper()

    def stall_cause(self, state: str) -> str:
        """The usual cause of a process of this kind that stays in ``state``."""
        return self.stall_causes.get(state, "no callback and no state change came from the connector")


def _text(value: object) -> str | None:
    """A value that must be text (an id, a reason): non-empty text, else ``None``."""
    return value if isinstance(value, str) and value else None


def _string(value: object) -> str | None:
    """A connector's reason: text as it is, else ``None``."""
    return value if isinstance(value, str) else None


def _transfer_event(payload: Mapping[str, Any]) -> Details:
    return {
        "reason": _string(payload.get("reason")),
        "asset_id": _text(payload.get("assetId")),
        "contract_id": _text(payload.get("contractId")),
    }


def _transfer_state(process: Mapping[str, Any]) -> Details:
    return {
        "reason": _string(jsonld_get(process, "errorDetail")),
        "asset_id": _text(jsonld_get(process, "assetId")),
        "contract_id": _text(jsonld_get(process, "contractId")),
    }


def _negotiation_event(payload: Mapping[str, Any]) -> Details:
    agreement = payload.get("contractAgreement")
    agreement = agreement if isinstance(agreement, Mapping) else {}
    return {
        "contract_agreement_id": _text(agreement.get("id")),
        "asset_id": _text(agreement.get("assetId")),
        "counter_party_id": _text(payload.get("counterPartyId")),
    }


def _negotiation_state(negotiation: Mapping[str, Any]) -> Details:
    return {
        "contract_agreement_id": _text(jsonld_get(negotiation, "contractAgreementId")),
        "reason": _string(jsonld_get(negotiation, "errorDetail")),
        "counter_party_id": _text(jsonld_get(negotiation, "counterPartyId")),
    }


def _read_transfer(hook: EdcManagementHook, process_id: str) -> Awaitable[dict[str, Any]]:
    return hook.aget_transfer_process(process_id)  # state, errorDetail, asset and contract in one request


def _read_negotiation(hook: EdcManagementHook, process_id: str) -> Awaitable[dict[str, Any]]:
    return hook.aget_negotiation(process_id)


def _terminate_transfer(hook: EdcManagementHook, process_id: str, reason: str) -> Awaitable[None]:
    return hook.aterminate_transfer(process_id, reason)


def _terminate_negotiation(hook: EdcManagementHook, process_id: str, reason: str) -> Awaitable[None]:
    return hook.aterminate_negotiation(process_id, reason)


_TRANSFER_STATES = ("STARTED", "COMPLETED", "TERMINATED", "DEPROVISIONED")


@cache
def transfer_kind(wait_for: WaitFor) -> ProcessKind:
    """The transfer process kind for a wait for ``started`` or ``completed`` (see
    :func:`~airflow_edc_callbacks.models.terminal_outcome` and :func:`~airflow_edc_callbacks.models.state_outcome`).

    :raises ValueError: ``wait_for`` is ``auto`` (resolve it against the transfer type first).
    """
    if wait_for is WaitFor.AUTO:
        raise ValueError("wait_for must be resolved to 'started' or 'completed' before deferring")
    events = {t.value: o for t in TransferEventType if (o := terminal_outcome(t.value, wait_for)) is not None}
    states = {s: o for s in _TRANSFER_STATES if (o := state_outcome(s, wait_for)) is not None}
    causes = dict(TRANSFER_STALL_CAUSES)
    if wait_for is WaitFor.COMPLETED:
        causes["STARTED"] = _STILL_COPYING
    return ProcessKind(
        name="transfer",
        label="transfer process",
        awaited=wait_for.value,
        event_prefix=TRANSFER_EVENT_PREFIX,
        event_outcomes=events,
        state_outcomes=states,
        stall_causes=causes,
        read=_read_transfer,
        terminate=_terminate_transfer,
        event_details=_transfer_event,
        state_details=_transfer_state,
        result=TransferResult,
        undone_by={TransferEventType.STARTED.value: TransferEventType.SUSPENDED.value},
    )


NEGOTIATION = ProcessKind(
    name="negotiation",
    label="contract negotiation",
    awaited="finalized",
    event_prefix=NEGOTIATION_EVENT_PREFIX,
    event_outcomes={"ContractNegotiationFinalized": Outcome.SUCCESS, "ContractNegotiationTerminated": Outcome.FAILED},
    state_outcomes={"FINALIZED": Outcome.SUCCESS, "TERMINATED": Outcome.FAILED},
    stall_causes=NEGOTIATION_STALL_CAUSES,
    read=_read_negotiation,
    terminate=_terminate_negotiation,
    event_details=_negotiation_event,
    state_details=_negotiation_state,
    result=NegotiationResult,
    reason_from_connector=True,
)
"""The contract negotiation kind (waits for ``FINALIZED``; ``TERMINATED`` fails)."""
