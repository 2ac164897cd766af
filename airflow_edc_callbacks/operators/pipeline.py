"""``EdcNegotiatedTransferOperator``: catalog -> contract negotiation -> transfer (-> PULL data) as one task.

It composes the two steps the single-purpose operators use: a
:class:`~airflow_edc_callbacks.operators.negotiation.NegotiationStep`, then a
:class:`~airflow_edc_callbacks.operators.transfer_step.TransferStep` under the new agreement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import DEFAULT_CONN_ID, default_deferrable, non_negative_seconds
from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.lineage.facets import TransferFacts
from airflow_edc_callbacks.lineage.mixin import EdcLineageMixin
from airflow_edc_callbacks.operators.lifecycle import terminate_when_killed
from airflow_edc_callbacks.operators.negotiation import NegotiationStep, complete_negotiation
from airflow_edc_callbacks.operators.pull import pull_data, terminate_after_fetch
from airflow_edc_callbacks.operators.transfer_step import (
    TransferStep,
    defer_after_seconds,
    positive,
    resume_transfer,
)
from airflow_edc_callbacks.triggers.callback import stall_seconds
from airflow_edc_callbacks.triggers.kinds import KindName

if TYPE_CHECKING:
    from airflow.sdk import Context


class EdcNegotiatedTransferOperator(EdcLineageMixin, BaseOperator):
    """Negotiate a contract for an asset, transfer it and, for PULL, fetch its data: one task, two waits.

    1. Requests the provider's catalog through the consumer connector and takes the asset's first offer
       (or ``offer``), then sends the contract request with a callback address and defers until
       ``ContractNegotiationFinalized`` (``ContractNegotiationTerminated`` fails the task with the
       connector's ``errorDetail``).
    2. Starts the transfer under the new contract agreement with a callback address and defers until
       ``TransferProcessCompleted`` (PUSH) or ``TransferProcessStarted`` (PULL), as
       :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator` does.
    3. With ``destination`` (PULL), downloads the data with the transfer's EDR into that file.

    Each wait is driven by the connector's callbacks; the connector is asked only after
    ``fallback_check_interval`` of silence. A retry that finds the transfer an earlier try started still
    running (or, PUSH, COMPLETED with no try having taken its result) waits for it instead of negotiating
    again. Compare the Tractus-X ``POST /v3/edrs``, which
    negotiates and starts a PULL transfer in one call but leaves the waiting to the client.

    :param asset_id: the provider's asset (templated).
    :param counter_party_address: the provider's DSP address (templated).
    :param counter_party_id: the provider's participant id (templated).
    :param offer: an offer to use instead of the catalog's first (templated).
    :param transfer_type: ``HttpData-PULL`` or ``HttpData-PUSH`` (templated); required, as in every
        operator of this provider (see :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator`).
    :param data_destination: the ``DataAddress`` to push to (PUSH) (templated).
    :param destination: PULL: the local file the data goes to (templated); ``None`` leaves the fetch to
        a later task (:class:`~airflow_edc_callbacks.operators.pull.EdcPullDataOperator`).
    :param path: PULL: appended to the EDR's endpoint path (templated).
    :param query_params: PULL: query parameters of the data request (templated).
    :param negotiation_timeout: how long the negotiation may take (seconds or timedelta; default 1 h); then
        the task fails with :class:`~airflow_edc_callbacks.exceptions.EdcNegotiationTimeout`
        (``terminate_on_timeout`` and ``terminate_on_kill`` apply to the negotiation as to the transfer).
    :param request_timeout: PULL: seconds for the data request's connect and read.
    :param terminate_after_fetch: PULL with ``destination``: once the data landed, terminate the transfer
        process on the connector (default ``False``; see
        :func:`~airflow_edc_callbacks.operators.pull.terminate_after_fetch`: a transfer already final is
        fine, a failing terminate is a warning, never a failure of the task).

    :param defer_after: deferrable only: seconds each wait (the negotiation's, then the transfer's) first
        spends in the worker before deferring; a step that ends within them goes on without a deferral
        (a negotiation and a transfer that both end quickly complete the task in one worker run).
        ``0`` defers at once; default ``[edc_callbacks] defer_after``.

    Other parameters as :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator`
    (``timeout`` and ``stall_timeout`` bound the transfer's wait; the negotiation's wait takes
    ``[edc_callbacks] stall_timeout``).

    Lineage: OpenLineage facets (input the provider's asset, output the PUSH destination or the fetched
    file, run facet ``edcTransfer`` with the negotiation's and the transfer's ids) and, on success, the
    transfer's ``extra`` (with ``file``, ``size``, ``sha256`` when data was fetched) on the asset event of
    each asset in ``outlets`` (see docs/guides/lineage-and-assets.md).

    Returns (XCom): the transfer's result (``transfer_process_id``, ``state``, ``source``, ``timeline``...)
    with ``negotiation`` (``contract_negotiation_id``, ``contract_agreement_id``, ``source``,
    ``timeline``; ``None`` when a retry took over an earlier try's transfer) and, when data was fetched,
    ``data`` (``file``, ``size``, ``sha256``...; with ``terminate_after_fetch`` also ``terminated``). Never
    the EDR or its token.

    :raises EdcNegotiationFailed: the negotiation was terminated.
    :raises EdcNegotiationTimeout: the negotiation did not end within ``negotiation_timeout``.
    :raises EdcTransferFailed: the transfer was terminated.
    :raises EdcTransferTimeout: the transfer did not reach the awaited state within ``timeout``.
    :raises EdcDataFetchError: the provider's public endpoint refused or failed the data request.
    """

    template_fields: Sequence[str] = (
        "counter_party_address",
        "transfer_type",
        "data_destination",
        "protocol",
        "asset_id",
        "private_properties",
        "wait_for",
        "edc_conn_id",
        "counter_party_id",
        "offer",
        "destination",
        "path",
        "query_params",
    )
    template_fields_renderers = {
        "data_destination": "json",
        "private_properties": "json",
        "offer": "json",
        "query_params": "json",
    }
    ui_color = "#dae8fc"

    def __init__(
        self,
        *,
        asset_id: str,
        counter_party_address: str,
        counter_party_id: str,
        offer: Mapping[str, Any] | str | None = None,
        transfer_type: str,
        data_destination: Mapping[str, Any] | None = None,
        destination: str | None = None,
        path: str = "",
        query_params: Mapping[str, str] | None = None,
        protocol: str | None = None,
        private_properties: Mapping[str, Any] | None = None,
        wait_for: str = "auto",
        edc_conn_id: str = DEFAULT_CONN_ID,
        timeout: timedelta | float = timedelta(hours=24),
        negotiation_timeout: timedelta | float = timedelta(hours=1),
        fallback_check_interval: float | None = None,
        stall_timeout: timedelta | float | None = None,
        deferrable: bool = default_deferrable(),
        reattach: bool = True,
        terminate_on_timeout: bool = True,
        terminate_on_kill: bool = True,
        request_timeout: float = 60.0,
        terminate_after_fetch: bool = False,
        defer_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id
        self.counter_party_address = counter_party_address
        self.counter_party_id = counter_party_id
        self.offer = offer
        self.transfer_type = transfer_type
        self.data_destination = data_destination
        self.destination = destination
        self.path = path
        self.query_params = query_params
        self.protocol = protocol
        self.private_properties = private_properties
        self.wait_for = wait_for
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.negotiation_timeout = (
            negotiation_timeout
            if isinstance(negotiation_timeout, timedelta)
            else timedelta(seconds=negotiation_timeout)
        )
        self.fallback_check_interval = fallback_check_interval
        self.stall_timeout = stall_seconds(stall_timeout)
        self.deferrable = deferrable
        self.reattach = reattach
        self.terminate_on_timeout = terminate_on_timeout
        self.terminate_on_kill = terminate_on_kill
        self.request_timeout = request_timeout
        self.terminate_after_fetch = terminate_after_fetch
        self.defer_after = None if defer_after is None else non_negative_seconds("defer_after", defer_after)
        self._waiting_on: tuple[KindName, str] | None = None  # what an in-worker wait waits for (on_kill)

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    def _request_asset_id(self) -> str | None:
        return None  # the contract agreement names the asset

    def _negotiation_step(self) -> NegotiationStep:
        """The first step from the rendered fields (``negotiation_timeout`` bounds it).

        :raises ValueError: ``asset_id`` is empty, ``offer``, ``negotiation_timeout`` or ``defer_after`` is
            not valid.
        """
        return NegotiationStep(
            asset_id=self.asset_id,
            counter_party_address=self.counter_party_address,
            counter_party_id=self.counter_party_id,
            offer=self.offer,
            protocol=self.protocol,
            edc_conn_id=self.edc_conn_id,
            timeout=positive("negotiation_timeout", self.negotiation_timeout),
            deferrable=self.deferrable,
            terminate_on_kill=self.terminate_on_kill,
            fallback_check_interval=self.fallback_check_interval,
            defer_after=defer_after_seconds(self.defer_after),
        )

    def _transfer_step(self) -> TransferStep:
        """The second step from the rendered fields (``timeout`` bounds it).

        :raises ValueError: ``wait_for``, ``timeout`` or ``destination`` is not valid.
        """
        if self.destination and not self.transfer_type.upper().endswith("-PULL"):
            raise ValueError(f"destination is for PULL transfers; {self.transfer_type} delivers to data_destination")
        return TransferStep.of(self, asset_id=self._request_asset_id())

    def on_kill(self) -> None:
        """Killed while waiting in the worker (non-deferrable): terminate the negotiation or transfer it
        waits for when ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, self._hook(), self._waiting_on, self.terminate_on_kill)

    def execute(self, context: Context) -> Any:
        """Take over an earlier try's transfer (see :meth:`TransferStep.find_unfinished`), or start the
        negotiation and wait for it.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        transfer = self._transfer_step()  # everything is checked before a contract is negotiated
        negotiation = self._negotiation_step()
        hook = self._hook()
        running = transfer.find_unfinished(self, context, hook)
        if running is not None:
            return transfer.wait(self, context, hook, running, self.execute_complete, {"negotiation": None})
        negotiation_id = negotiation.start(self, context, hook)
        return negotiation.wait(self, context, hook, negotiation_id, self.negotiation_complete)

    def negotiation_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the negotiation's trigger fired: start the transfer under the new agreement.

        :raises EdcNegotiationFailed: the negotiation was terminated.
        :raises TaskDeferred: when deferrable, to wait for the transfer.
        """
        self.lineage_note(event)
        try:
            negotiation = complete_negotiation(
                self, event, self.edc_conn_id, self._hook, self.asset_id, terminate_on_timeout=self.terminate_on_timeout
            )
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise
        transfer = self._transfer_step()
        hook = self._hook()
        transfer_id = transfer.start(self, context, hook, str(negotiation["contract_agreement_id"]))
        return transfer.wait(self, context, hook, transfer_id, self.execute_complete, {"negotiation": negotiation})

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, negotiation: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the transfer's trigger fired; fetch the PULL data when ``destination`` is set.

        :raises EdcTransferFailed: the transfer was terminated.
        :raises EdcTransferTimeout: the transfer's time-out passed.
        :raises EdcDataFetchError: the data request failed.
        """
        self.lineage_note(negotiation)
        self.lineage_note(event)
        try:
            result = self._transfer_result(event, negotiation)
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise
        data = result.get("data")
        if data:
            self.lineage_note(file=data.get("file"), size=data.get("size"), sha256=data.get("sha256"))
        self.emit_transfer_assets(context, result, data)
        return result

    def _transfer_result(self, event: dict[str, Any] | None, negotiation: dict[str, Any] | None) -> dict[str, Any]:
        result = resume_transfer(
            self, event, self.edc_conn_id, self._hook, terminate_on_timeout=self.terminate_on_timeout
        )
        result["negotiation"] = negotiation
        if self.destination and result.get("state") == "STARTED":
            hook = self._hook()
            result["data"] = pull_data(
                self,
                hook,
                result["transfer_process_id"],
                self.destination,
                path=self.path,
                query_params=self.query_params,
                request_timeout=self.request_timeout,
            )
            if self.terminate_after_fetch:
                result["data"]["terminated"] = terminate_after_fetch(self, hook, result["transfer_process_id"])
        return result

    def lineage_facts(self) -> TransferFacts:
        """The rendered fields as lineage facts; for a PULL with ``destination``, that file is the output."""
        facts = super().lineage_facts()
        if self.destination and isinstance(self.destination, str) and self.transfer_type.upper().endswith("-PULL"):
            facts = facts.merged(file=self.destination)
        return facts
