"""``EdcContractNegotiationOperator``: negotiate a contract and resume on the connector's callback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import DEFAULT_CONN_ID, default_deferrable
from airflow_edc_callbacks.exceptions import EdcNegotiationFailed
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.operators.lifecycle import ProcessKind, arm, raise_timeout, safety_net, terminate_when_killed
from airflow_edc_callbacks.operators.resume import connector_url, log_timeline, validate_event, worker_exit_seconds
from airflow_edc_callbacks.tokens import callback_url, correlation_id_for
from airflow_edc_callbacks.triggers.inline import first_event
from airflow_edc_callbacks.triggers.negotiation import EdcNegotiationTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "EdcContractNegotiationOperator",
    "NegotiationSteps",
    "complete_negotiation",
    "start_negotiation",
    "wait_inline",
]


class NegotiationSteps:
    """Start a contract negotiation and wait for it: the step the negotiating operators share.

    The operator using it carries ``asset_id``, ``counter_party_address``, ``counter_party_id``,
    ``offer``, ``protocol``, ``edc_conn_id``, ``fallback_check_interval``, ``deferrable``,
    ``terminate_on_timeout`` and ``terminate_on_kill``.
    """

    asset_id: str | None
    counter_party_address: str
    counter_party_id: str
    offer: Mapping[str, Any] | str | None
    protocol: str | None
    edc_conn_id: str
    fallback_check_interval: float | None
    deferrable: bool
    terminate_on_timeout: bool
    terminate_on_kill: bool
    _waiting_on: tuple[ProcessKind, str] | None

    def negotiate_and_wait(
        self, context: Context, hook: EdcManagementHook, *, method_name: str, timeout: timedelta
    ) -> Any:
        """Start the negotiation (:func:`start_negotiation`) and wait for its final callback.

        Deferrable: defers, and Airflow resumes ``method_name(context, event=...)``. Otherwise waits in the
        worker and returns ``method_name(context, event)``.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        :raises ValueError: ``asset_id`` is empty, or the asset is not in the provider's catalog, or has no offer.
        """
        if not self.asset_id:
            raise ValueError("asset_id must not be empty")
        offer = parse_offer(self.offer)
        task = cast("BaseOperator", self)
        ti = context["ti"]
        correlation_id = correlation_id_for(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
        negotiation_id = start_negotiation(
            task,
            hook,
            correlation_id=correlation_id,
            asset_id=self.asset_id,
            counter_party_address=self.counter_party_address,
            counter_party_id=self.counter_party_id,
            offer=offer,
            protocol=self.protocol,
        )
        trigger = EdcNegotiationTrigger(
            correlation_id=correlation_id,
            contract_negotiation_id=negotiation_id,
            conn_id=self.edc_conn_id,
            fallback_check_interval=self.fallback_check_interval,
        )
        arm(trigger, timeout, terminate_on_kill=self.terminate_on_kill)
        if self.deferrable:
            trigger.not_before = time.time() + worker_exit_seconds()
            task.defer(trigger=trigger, method_name=method_name, timeout=safety_net(timeout))
        self._waiting_on = ("negotiation", negotiation_id)
        try:
            event = wait_inline(trigger, hook, timeout)
        finally:
            self._waiting_on = None
        return getattr(self, method_name)(context, event)


class EdcContractNegotiationOperator(NegotiationSteps, BaseOperator):
    """Negotiate a contract for an asset with the provider, waiting on the negotiation's callbacks.

    Requests the provider's catalog through the consumer connector, takes the first offer of
    ``asset_id`` (or the given ``offer``), sends the contract request with a dynamic callback address
    (events ``contract.negotiation``), defers, and resumes on ``ContractNegotiationFinalized`` or
    ``ContractNegotiationTerminated`` (then fails with the connector's ``errorDetail``).

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
        self._waiting_on = None

    def on_kill(self) -> None:
        """Killed while waiting in the worker (non-deferrable): terminate the negotiation when
        ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, EdcManagementHook(self.edc_conn_id), self._waiting_on, self.terminate_on_kill)

    def execute(self, context: Context) -> Any:
        hook = EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())
        return self.negotiate_and_wait(context, hook, method_name="execute_complete", timeout=self.timeout)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired.

        :raises TriggerEventError: the event is missing or has an unknown status.
        :raises EdcNegotiationFailed: the negotiation was terminated (with the connector's reason).
        :raises EdcNegotiationTimeout: the trigger's time-out passed.
        """
        return complete_negotiation(
            self, event, self.edc_conn_id, self.asset_id, terminate_on_timeout=self.terminate_on_timeout
        )


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


def start_negotiation(
    task: BaseOperator,
    hook: EdcManagementHook,
    *,
    correlation_id: str,
    asset_id: str,
    counter_party_address: str,
    counter_party_id: str,
    offer: Mapping[str, Any] | None = None,
    protocol: str | None = None,
) -> str:
    """Request the catalog (unless ``offer`` is given), send the contract request with a callback address
    (events ``contract.negotiation``) for ``correlation_id``, and return the contract negotiation id.

    :raises ValueError: the asset is not in the provider's catalog, or has no offer.
    :raises EdcApiError: the connector refused a request.
    """
    if not offer:
        catalog = hook.request_catalog(
            counter_party_address, counter_party_id=counter_party_id, asset_id=asset_id, protocol=protocol
        )
        offer = hook.find_offer(catalog, asset_id)
    request = hook.build_contract_request(
        counter_party_address=counter_party_address,
        offer=offer,
        assigner=counter_party_id,
        target=asset_id,
        callback_addresses=[hook.callback_address(callback_url(correlation_id), events=["contract.negotiation"])],
        protocol=protocol,
    )
    negotiation_id = hook.start_negotiation(request)
    task.log.info(
        "Started contract negotiation %s on %s for asset %s (offer %s)",
        negotiation_id,
        hook.settings.base_url,
        asset_id,
        offer.get("@id"),
    )
    return negotiation_id


def wait_inline(trigger: EdcNegotiationTrigger, hook: EdcManagementHook, timeout: timedelta) -> dict[str, Any]:
    """Wait in the worker for the negotiation trigger's event (non-deferrable mode): its result, or its
    ``timeout`` event at its deadline (a ``timeout`` event with an unknown state also when even the
    safety net, ``timeout`` + 60 s, passes)."""
    trigger.hook = hook
    try:
        return asyncio.run(first_event(trigger, safety_net(timeout).total_seconds()))
    except TimeoutError:
        return {
            "status": "timeout",
            "contract_negotiation_id": trigger.contract_negotiation_id,
            "state": None,
            "waited_seconds": safety_net(timeout).total_seconds(),
        }


def complete_negotiation(
    task: BaseOperator,
    event: dict[str, Any] | None,
    edc_conn_id: str,
    asset_id: str | None,
    *,
    terminate_on_timeout: bool = False,
) -> dict[str, Any]:
    """Turn an :class:`EdcNegotiationTrigger` event into the task's result (see the operator's XCom).

    :param terminate_on_timeout: for a ``timeout`` event, terminate the negotiation on the connector first.
    :raises TriggerEventError: the event is missing or has an unknown status.
    :raises EdcNegotiationFailed: the negotiation was terminated (with the connector's reason).
    :raises EdcNegotiationTimeout: a ``timeout`` event (names the negotiation, connector, last state, wait).
    """
    event = validate_event(task, event)
    negotiation_id = str(event["contract_negotiation_id"])
    log_timeline(task, "Contract negotiation", negotiation_id, event.get("timeline", []))
    if event["status"] == "timeout":
        raise_timeout(
            task,
            event,
            kind="negotiation",
            hook=EdcManagementHook(edc_conn_id),
            connector=connector_url(edc_conn_id),
            terminate=terminate_on_timeout,
        )
    if event["status"] == "failed":
        raise EdcNegotiationFailed(negotiation_id, connector_url(edc_conn_id), event.get("reason"))
    task.log.info("Contract negotiation %s FINALIZED: agreement %s", negotiation_id, event["contract_agreement_id"])
    return {
        "contract_negotiation_id": negotiation_id,
        "contract_agreement_id": event.get("contract_agreement_id"),
        "state": event.get("state"),
        "asset_id": event.get("asset_id") or asset_id,
        "counter_party_id": event.get("counter_party_id"),
        "source": event.get("source"),
        "timeline": event.get("timeline", []),
    }
