"""``EdcContractNegotiationOperator``: negotiate a contract and resume on the connector's callback.

:class:`NegotiationStep` is the step itself (catalog, contract request with a callback address, wait);
:class:`~airflow_edc_callbacks.operators.pipeline.EdcNegotiatedTransferOperator` composes it with a
transfer step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import DEFAULT_CONN_ID, default_deferrable, non_negative_seconds
from airflow_edc_callbacks.exceptions import EdcCallbacksError, EdcNegotiationFailed, EdcNegotiationTimeout
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.lineage.mixin import EdcLineageMixin
from airflow_edc_callbacks.models import Outcome
from airflow_edc_callbacks.operators.callback_address import task_callback_url
from airflow_edc_callbacks.operators.lifecycle import (
    terminate_at_timeout,
    terminate_when_killed,
    waiting_on,
)
from airflow_edc_callbacks.operators.transfer_step import correlation_of, defer_after_seconds
from airflow_edc_callbacks.triggers.deferral import arm, connector_url, defer_or_wait, safety_net
from airflow_edc_callbacks.triggers.kinds import KindName
from airflow_edc_callbacks.triggers.negotiation import EdcNegotiationTrigger
from airflow_edc_callbacks.triggers.results import NegotiationResult, parse_event

if TYPE_CHECKING:
    from airflow.sdk import Context


@dataclass(frozen=True)
class NegotiationStep:
    """Negotiate a contract for an asset and wait for the negotiation through callbacks: the step of
    :class:`EdcContractNegotiationOperator`, and the first step of the one-step operator. Built from the
    task's rendered fields (see :class:`EdcContractNegotiationOperator` for each).

    :raises ValueError: ``asset_id`` is empty, or ``offer`` is text that is not a JSON object.
    """

    asset_id: str
    counter_party_address: str
    counter_party_id: str
    offer: Mapping[str, Any] | str | None
    protocol: str | None
    edc_conn_id: str
    timeout: timedelta
    deferrable: bool
    terminate_on_kill: bool
    fallback_check_interval: float | None = None
    defer_after: float = 0.0

    def __post_init__(self) -> None:
        if not self.asset_id:
            raise ValueError("asset_id must not be empty")
        parse_offer(self.offer)

    def start(self, task: BaseOperator, context: Context, hook: EdcManagementHook) -> str:
        """Request the catalog (unless ``offer`` is given), send the contract request with a callback
        address (events ``contract.negotiation``) for this task instance; the contract negotiation id.

        :raises ValueError: the asset is not in the provider's catalog, or has no offer.
        :raises EdcApiError: the connector refused a request.
        """
        offer = parse_offer(self.offer)
        if not offer:
            catalog = hook.request_catalog(
                self.counter_party_address,
                counter_party_id=self.counter_party_id,
                asset_id=self.asset_id,
                protocol=self.protocol,
            )
            offer = hook.find_offer(catalog, self.asset_id)
        request = hook.build_contract_request(
            counter_party_address=self.counter_party_address,
            offer=offer,
            assigner=self.counter_party_id,
            target=self.asset_id,
            callback_addresses=[
                hook.callback_address(task_callback_url(task, correlation_of(context)), events=["contract.negotiation"])
            ],
            protocol=self.protocol,
        )
        negotiation_id = hook.start_negotiation(request)
        task.log.info(
            "Started contract negotiation %s on %s for asset %s (offer %s)",
            negotiation_id,
            hook.settings.base_url,
            self.asset_id,
            offer.get("@id"),
        )
        return negotiation_id

    def wait(
        self,
        task: BaseOperator,
        context: Context,
        hook: EdcManagementHook,
        negotiation_id: str,
        resume: Callable[..., Any],
    ) -> Any:
        """Wait for the negotiation's final callback: defer to :class:`EdcNegotiationTrigger` (after up to
        ``defer_after`` seconds of waiting in the worker) or run it in the worker, then
        ``resume(context, event)``.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        trigger = EdcNegotiationTrigger(
            correlation_id=correlation_of(context),
            contract_negotiation_id=negotiation_id,
            conn_id=self.edc_conn_id,
            fallback_check_interval=self.fallback_check_interval,
        )
        arm(trigger, self.timeout, terminate_on_kill=self.terminate_on_kill)
        trigger.hook = hook  # in the worker: the task's own hook
        net = safety_net(self.timeout)

        def safety_net_passed(_: TimeoutError) -> dict[str, Any]:  # the trigger's own time-out did not come
            waited = net.total_seconds()
            return {"status": "timeout", "contract_negotiation_id": negotiation_id, "waited_seconds": waited}

        return defer_or_wait(
            task,
            trigger,
            context,
            deferrable=self.deferrable,
            resume=resume,
            timeout=net,
            on_timeout=safety_net_passed,
            while_waiting=waiting_on(task, "negotiation", negotiation_id),
            defer_after=self.defer_after,
        )


class EdcContractNegotiationOperator(EdcLineageMixin, BaseOperator):
    """Negotiate a contract for an asset with the provider, waiting on the negotiation's callbacks.

    Requests the provider's catalog through the consumer connector, takes the first offer of
    ``asset_id`` (or the given ``offer``), sends the contract request with a dynamic callback address
    (events ``contract.negotiation``), defers, and resumes on ``ContractNegotiationFinalized`` or
    ``ContractNegotiationTerminated`` (then fails with the connector's ``errorDetail``). Before deferring
    it waits ``defer_after`` seconds in the worker: a negotiation that ends within them completes the
    task without a deferral.

    :param asset_id: the provider's asset (templated).
    :param counter_party_address: the provider's DSP address (templated).
    :param counter_party_id: the provider's participant id, the policy's ``assigner`` (templated).
    :param offer: an offer (ODRL policy with ``@id``) to use instead of the catalog's first, as a mapping or
        JSON text (templated; ``"{{ params.offer | tojson }}"``).
    :param protocol: DSP protocol id; default the connection's (templated).
    :param edc_conn_id: the ``edc`` connection of the consumer connector (templated).
    :param timeout: how long to wait (seconds or timedelta; default 1 h); then the task fails with
        :class:`~airflow_edc_callbacks.exceptions.EdcNegotiationTimeout` (last state, wait in seconds).
    :param terminate_on_timeout: at the time-out, terminate the negotiation on the connector first
        (default ``True``; EDC may refuse in some states, e.g. ``REQUESTED``: logged).
    :param terminate_on_kill: terminate the negotiation when a user marks the waiting task failed or
        success, or clears it (default ``True``; see :class:`~airflow_edc_callbacks.operators.EdcTransferOperator`).
    :param fallback_check_interval: seconds without a callback before asking the connector for the state
        (then with a back-off).
    :param deferrable: defer to the triggerer while waiting (``True``) or wait in the worker on the same
        event store (``False``); default Airflow's ``[operators] default_deferrable`` (``False`` unless
        set).
    :param defer_after: deferrable only: seconds to wait in the worker before deferring (see
        :class:`~airflow_edc_callbacks.operators.EdcTransferOperator`); default ``[edc_callbacks] defer_after``.

    Lineage: OpenLineage facets with the provider's asset as input and the run facet ``edcTransfer``
    (negotiation id, agreement id, counter-party id, terminal event; the reason of a terminated negotiation).

    Returns (XCom): ``contract_negotiation_id``, ``contract_agreement_id`` (the ``contract_id`` of a
    transfer), ``state``, ``asset_id``, ``counter_party_id``, ``source`` and ``timeline``.

    :raises EdcNegotiationFailed: the negotiation was terminated.
    :raises EdcNegotiationTimeout: the negotiation did not end within ``timeout``.
    :raises ValueError: the asset is not in the provider's catalog, or has no offer.
    """

    template_fields: Sequence[str] = (
        "asset_id",
        "counter_party_address",
        "counter_party_id",
        "offer",
        "protocol",
        "edc_conn_id",
    )
    template_fields_renderers = {"offer": "json"}
    ui_color = "#d5e8d4"

    def __init__(
        self,
        *,
        asset_id: str,
        counter_party_address: str,
        counter_party_id: str,
        offer: Mapping[str, Any] | str | None = None,
        protocol: str | None = None,
        edc_conn_id: str = DEFAULT_CONN_ID,
        timeout: timedelta | float = timedelta(hours=1),
        fallback_check_interval: float | None = None,
        deferrable: bool = default_deferrable(),
        terminate_on_timeout: bool = True,
        terminate_on_kill: bool = True,
        defer_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id
        self.counter_party_address = counter_party_address
        self.counter_party_id = counter_party_id
        self.offer = offer
        self.protocol = protocol
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.fallback_check_interval = fallback_check_interval
        self.deferrable = deferrable
        self.terminate_on_timeout = terminate_on_timeout
        self.terminate_on_kill = terminate_on_kill
        self.defer_after = None if defer_after is None else non_negative_seconds("defer_after", defer_after)
        self._waiting_on: tuple[KindName, str] | None = None  # what an in-worker wait waits for (on_kill)

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    def _negotiation_step(self) -> NegotiationStep:
        """The step from the rendered fields.

        :raises ValueError: ``asset_id`` is empty, ``offer`` or ``defer_after`` is not valid.
        """
        return NegotiationStep(
            asset_id=self.asset_id,
            counter_party_address=self.counter_party_address,
            counter_party_id=self.counter_party_id,
            offer=self.offer,
            protocol=self.protocol,
            edc_conn_id=self.edc_conn_id,
            timeout=self.timeout,
            deferrable=self.deferrable,
            terminate_on_kill=self.terminate_on_kill,
            fallback_check_interval=self.fallback_check_interval,
            defer_after=defer_after_seconds(self.defer_after),
        )

    def on_kill(self) -> None:
        """Killed while waiting in the worker (non-deferrable): terminate the negotiation when
        ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, self._hook(), self._waiting_on, self.terminate_on_kill)

    def execute(self, context: Context) -> Any:
        """Start the negotiation and wait for it: defer, or wait in the worker.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        :raises ValueError: ``asset_id`` is empty, or the asset is not in the provider's catalog, or has no offer.
        """
        step = self._negotiation_step()
        hook = self._hook()
        return step.wait(self, context, hook, step.start(self, context, hook), self.execute_complete)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired.

        :raises TriggerEventError: the event is missing or has an unknown status.
        :raises EdcNegotiationFailed: the negotiation was terminated (with the connector's reason).
        :raises EdcNegotiationTimeout: the trigger's time-out passed.
        """
        self.lineage_note(event)
        try:
            return complete_negotiation(
                self, event, self.edc_conn_id, self._hook, self.asset_id, terminate_on_timeout=self.terminate_on_timeout
            )
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise


def parse_offer(offer: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """An operator's ``offer``: a mapping, ``None``, or JSON text (a template such as
    ``"{{ params.offer | tojson }}"`` renders to text); empty, ``null`` and ``None`` mean none.

    :raises ValueError: text that is not a JSON object.
    """
    if offer is None or isinstance(offer, Mapping):
        return dict(offer) if offer else None
    text = str(offer).strip()
    if text in ("", "null", "None"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"offer must be an ODRL offer as a JSON object (with its @id), got {text[:100]!r}")
    return parsed


def complete_negotiation(
    task: BaseOperator,
    event: Mapping[str, Any] | None,
    edc_conn_id: str,
    hook: Callable[[], EdcManagementHook],
    asset_id: str | None,
    *,
    terminate_on_timeout: bool,
) -> dict[str, Any]:
    """Turn an :class:`EdcNegotiationTrigger` event into the task's result (see the operator's XCom).

    :param hook: gives the connection's hook (the terminate at a time-out).
    :param asset_id: the task's asset, when the event names none.
    :param terminate_on_timeout: for a ``timeout`` event, terminate the negotiation on the connector first.
    :raises TriggerEventError: no event, or a malformed one.
    :raises EdcNegotiationFailed: the negotiation was terminated (with the connector's reason).
    :raises EdcNegotiationTimeout: a ``timeout`` event (names the negotiation, connector, last state, wait).
    """
    result = parse_event(NegotiationResult, event, task.task_id)
    negotiation_id = result.contract_negotiation_id
    result.log_timeline(task.log, "Contract negotiation")
    if result.status is Outcome.TIMEOUT:
        outcome = terminate_at_timeout(task, hook(), "negotiation", result) if terminate_on_timeout else None
        raise EdcNegotiationTimeout(
            negotiation_id,
            connector_url(edc_conn_id),
            result.state or "UNKNOWN",
            result.waited_seconds or 0.0,
            outcome,
            result.reason,
        )
    if result.status is Outcome.FAILED:
        raise EdcNegotiationFailed(negotiation_id, connector_url(edc_conn_id), result.reason)
    task.log.info("Contract negotiation %s FINALIZED: agreement %s", negotiation_id, result.contract_agreement_id)
    return result.xcom(asset_id)
