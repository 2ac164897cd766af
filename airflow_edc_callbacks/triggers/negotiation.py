"""``EdcNegotiationTrigger``: waits for one contract negotiation's final callback.

EDC facts (``contract-spi`` events, EDC 0.15 to 0.18): ``ContractNegotiationFinalized`` carries the
``contractAgreement`` (its ``id`` is the contract id for transfer requests);
``ContractNegotiationTerminated`` carries no reason, so the connector's ``errorDetail`` is read once
(``GET /v3/contractnegotiations/{id}``) when the negotiation has ended.
"""

from __future__ import annotations

from typing import Any

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.models import jsonld_get
from airflow_edc_callbacks.store import StoredEvent
from airflow_edc_callbacks.triggers.callback import NEGOTIATION_STALL_CAUSES, EdcCallbackTrigger

__all__ = ["NEGOTIATION_EVENT_PREFIX", "EdcNegotiationTrigger"]

NEGOTIATION_EVENT_PREFIX = "ContractNegotiation"
_FINAL = {"ContractNegotiationFinalized": "success", "ContractNegotiationTerminated": "failed"}


def _text(value: object) -> str | None:
    """A payload value that must be text (an id), else ``None``."""
    return value if isinstance(value, str) and value else None


class EdcNegotiationTrigger(EdcCallbackTrigger):
    """Fire when the contract negotiation is FINALIZED or TERMINATED, as told by its callbacks.

    Same store-first wait, token rules, state-check back-off, deadline, stall warning and ``on_kill`` as
    :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger`. Its ``on_kill`` terminates the
    negotiation (``POST /v3/contractnegotiations/{id}/terminate``); EDC can refuse that in some states
    (e.g. ``REQUESTED``), which is logged.

    :param correlation_id: the correlation id in the callback token the operator sent.
    :param contract_negotiation_id: the consumer's contract negotiation id.

    The event payload: ``status`` (``success`` | ``failed`` | ``timeout``), ``contract_negotiation_id``,
    ``contract_agreement_id``, ``state``, ``event_type``, ``reason`` (the connector's ``errorDetail``),
    ``source`` (``callback`` | ``state_check``), ``asset_id``, ``counter_party_id``, ``timeline``,
    ``correlation_id`` and, for a time-out, ``waited_seconds``.
    """

    EVENT_PREFIX = NEGOTIATION_EVENT_PREFIX
    PROCESS_LABEL = "contract negotiation"

    def __init__(
        self,
        *,
        correlation_id: str | None,
        contract_negotiation_id: str,
        conn_id: str = DEFAULT_CONN_ID,
        fallback_check_interval: float | None = None,
        not_before: float | None = None,
        deadline: float | None = None,
        waiting_since: float | None = None,
        terminate_on_kill: bool = False,
    ) -> None:
        super().__init__(
            correlation_id=correlation_id,
            transfer_process_id=contract_negotiation_id,
            conn_id=conn_id,
            fallback_check_interval=fallback_check_interval,
            not_before=not_before,
            deadline=deadline,
            waiting_since=waiting_since,
            terminate_on_kill=terminate_on_kill,
        )
        self.contract_negotiation_id = contract_negotiation_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_edc_callbacks.triggers.negotiation.EdcNegotiationTrigger",
            {
                "correlation_id": self.correlation_id,
                "contract_negotiation_id": self.contract_negotiation_id,
                "conn_id": self.conn_id,
                "fallback_check_interval": self.fallback_check_interval,
                "not_before": self.not_before,
                "deadline": self.deadline,
                "waiting_since": self.waiting_since,
                "terminate_on_kill": self.terminate_on_kill,
            },
        )

    def _stall_cause(self, state: str) -> str:
        return NEGOTIATION_STALL_CAUSES.get(state, "no callback and no state change came from the connector")

    def _timeout_payload(
        self, state: str, source: str | None, waited: float, timeline: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            **self._result(
                status="timeout", state=state, event_type=None, source=source, timeline=timeline, agreement_id=None
            ),
            "waited_seconds": round(waited, 1),
        }

    async def _terminate(self, reason: str) -> None:
        await self._hook().aterminate_negotiation(self.contract_negotiation_id, reason)

    def _result(
        self,
        *,
        status: str,
        state: str,
        event_type: str | None,
        source: str | None,
        timeline: list[dict[str, Any]],
        agreement_id: str | None,
        reason: str | None = None,
        asset_id: str | None = None,
        counter_party_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "status": status,
            "contract_negotiation_id": self.contract_negotiation_id,
            "contract_agreement_id": agreement_id,
            "correlation_id": self.correlation_id,
            "state": state,
            "event_type": event_type,
            "reason": reason,
            "source": source,
            "asset_id": asset_id,
            "counter_party_id": counter_party_id,
            "timeline": timeline,
        }

    def _event_result(self, stored: StoredEvent, timeline: list[dict[str, Any]]) -> dict[str, Any] | None:
        status = _FINAL.get(stored.event_type)
        if status is None:
            return None
        payload = stored.payload
        agreement = payload.get("contractAgreement")
        agreement = agreement if isinstance(agreement, dict) else {}
        return self._result(
            status=status,
            state=stored.event_type[len(NEGOTIATION_EVENT_PREFIX) :].upper(),
            event_type=stored.event_type,
            source="callback",
            timeline=timeline,
            agreement_id=_text(agreement.get("id")),
            asset_id=_text(agreement.get("assetId")),
            counter_party_id=_text(payload.get("counterPartyId")),
        )

    async def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """A terminated negotiation's callback has no reason: read ``errorDetail`` once."""
        if result["status"] != "failed" or result.get("reason"):
            return result
        try:
            negotiation = await self._hook().aget_negotiation(self.contract_negotiation_id)
        except Exception as err:  # the reason is a courtesy; the failure stands without it
            self.log.warning("Could not read the reason of negotiation %s: %s", self.contract_negotiation_id, err)
            return result
        return {**result, "reason": jsonld_get(negotiation, "errorDetail")}

    async def _state_check(self, timeline: list[dict[str, Any]]) -> dict[str, Any] | None:
        """One ``GET /v3/contractnegotiations/{id}``."""
        negotiation = await self._hook().aget_negotiation(self.contract_negotiation_id)
        state = str(jsonld_get(negotiation, "state", "")).upper()
        self.log.info("Connector reports contract negotiation %s in state %s", self.contract_negotiation_id, state)
        self._observe(state, "state_check", jsonld_get(negotiation, "stateTimestamp"))
        status = {"FINALIZED": "success", "TERMINATED": "failed"}.get(state)
        if status is None:
            return None
        return self._result(
            status=status,
            state=state,
            event_type=None,
            source="state_check",
            timeline=timeline,
            agreement_id=jsonld_get(negotiation, "contractAgreementId"),
            reason=jsonld_get(negotiation, "errorDetail"),
            counter_party_id=jsonld_get(negotiation, "counterPartyId"),
        )
