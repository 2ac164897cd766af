"""``EdcNegotiationTrigger``: waits for one contract negotiation's final callback.

A thin shell over the waiting engine (:mod:`airflow_edc_callbacks.triggers.engine`) with the contract
negotiation kind (:data:`~airflow_edc_callbacks.triggers.kinds.NEGOTIATION`): same store-first wait,
token rules, state-check back-off, deadline, stall warning and ``on_kill`` as
:class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger`.

EDC facts (``contract-spi`` events, EDC 0.15 to 0.18): ``ContractNegotiationFinalized`` carries the
``contractAgreement`` (its ``id`` is the contract id for transfer requests);
``ContractNegotiationTerminated`` carries no reason, so the connector's ``errorDetail`` is read once
(``GET /v3/contractnegotiations/{id}``) when the negotiation has ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.triggers.callback import check_interval, stall_seconds
from airflow_edc_callbacks.triggers.kinds import NEGOTIATION
from airflow_edc_callbacks.triggers.shell import kill_unless_fired, run_until_final


class EdcNegotiationTrigger(BaseTrigger):
    """Fire when the contract negotiation is FINALIZED or TERMINATED, as told by its callbacks.

    Its ``on_kill`` terminates the negotiation (``POST /v3/contractnegotiations/{id}/terminate``); EDC can
    refuse that in some states (e.g. ``REQUESTED``), which is logged.

    :param correlation_id: the correlation id in the callback token the operator sent.
    :param contract_negotiation_id: the consumer's contract negotiation id.
    :param conn_id: the ``edc`` connection, for the state checks, the reason and the terminate.

    Other parameters as :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger`.

    The event payload is a :class:`~airflow_edc_callbacks.triggers.results.NegotiationResult`: ``status``
    (``success`` | ``failed`` | ``timeout``), ``contract_negotiation_id``, ``contract_agreement_id``,
    ``state``, ``event_type``, ``reason`` (the connector's ``errorDetail``), ``source`` (``callback`` |
    ``state_check``), ``asset_id``, ``counter_party_id``, ``timeline``, ``correlation_id`` and, for a
    time-out, ``waited_seconds``.
    """

    kind = NEGOTIATION

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
        stall_timeout: float | None = None,
    ) -> None:
        super().__init__()
        if not contract_negotiation_id:
            raise ValueError("contract_negotiation_id must not be empty")
        self.correlation_id = correlation_id
        self.contract_negotiation_id = contract_negotiation_id
        self.conn_id = conn_id
        self.fallback_check_interval = check_interval(fallback_check_interval)
        self.not_before = not_before
        self.deadline = deadline
        self.waiting_since = waiting_since
        self.terminate_on_kill = terminate_on_kill
        self.stall_timeout = stall_seconds(stall_timeout)
        self.hook: EdcManagementHook | None = None
        self._fired = False  # the trigger yielded its event (on_kill then changes nothing)

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
                "stall_timeout": self.stall_timeout,
            },
        )

    def _hook(self) -> EdcManagementHook:
        """The connection's hook, made once (state checks, the reason, the kill's terminate)."""
        self.hook = self.hook or EdcManagementHook(self.conn_id)
        return self.hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield one event (see the class docstring) when the negotiation is final or the deadline passed."""
        async for event in run_until_final(self, self.contract_negotiation_id):
            yield event

    async def on_kill(self) -> None:
        """A user marked the deferred task failed or success, or cleared it: terminate the negotiation
        when ``terminate_on_kill`` is set (see :func:`~airflow_edc_callbacks.triggers.kill.kill`)."""
        await kill_unless_fired(self, self.contract_negotiation_id)
