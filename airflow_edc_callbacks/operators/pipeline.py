"""``EdcNegotiatedTransferOperator``: catalog -> contract negotiation -> transfer (-> PULL data) as one task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.models import resolve_wait_for
from airflow_edc_callbacks.operators.negotiation import NegotiationSteps, complete_negotiation
from airflow_edc_callbacks.operators.pull import pull_data, terminate_after_fetch
from airflow_edc_callbacks.operators.transfer import EdcTransferOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["EdcNegotiatedTransferOperator"]


class EdcNegotiatedTransferOperator(NegotiationSteps, EdcTransferOperator):
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
    running waits for it instead of negotiating again. Compare the Tractus-X ``POST /v3/edrs``, which
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

    Other parameters as :class:`~airflow_edc_callbacks.operators.transfer.EdcTransferOperator`
    (``timeout`` bounds the transfer's wait).

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
        *EdcTransferOperator.template_fields,
        "counter_party_id",
        "offer",
        "destination",
        "path",
        "query_params",
    )
    template_fields_renderers = {
        **EdcTransferOperator.template_fields_renderers,
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
        destination: str | None = None,
        path: str = "",
        query_params: Mapping[str, str] | None = None,
        edc_conn_id: str = DEFAULT_CONN_ID,
        negotiation_timeout: timedelta | float = timedelta(hours=1),
        request_timeout: float = 60.0,
        terminate_after_fetch: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            contract_id="",
            counter_party_address=counter_party_address,
            transfer_type=transfer_type,
            asset_id=asset_id,
            edc_conn_id=edc_conn_id,
            **kwargs,
        )
        self.counter_party_id = counter_party_id
        self.offer = offer
        self.destination = destination
        self.path = path
        self.query_params = query_params
        self.negotiation_timeout = (
            negotiation_timeout
            if isinstance(negotiation_timeout, timedelta)
            else timedelta(seconds=negotiation_timeout)
        )
        self.request_timeout = request_timeout
        self.terminate_after_fetch = terminate_after_fetch

    def _request_asset_id(self) -> str | None:
        return None  # the contract agreement names the asset

    def execute(self, context: Context) -> Any:
        # everything the transfer step checks is checked before a contract is negotiated
        resolve_wait_for(self.wait_for, self.transfer_type)
        for name, value in (("timeout", self.timeout), ("negotiation_timeout", self.negotiation_timeout)):
            if value.total_seconds() <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.destination and not self.transfer_type.upper().endswith("-PULL"):
            raise ValueError(f"destination is for PULL transfers; {self.transfer_type} delivers to data_destination")
        hook = self._hook()
        running = self.find_unfinished_transfer(context, hook)
        if running is not None:
            return self.start_transfer_and_wait(
                context, transfer_process_id=running, resume_kwargs={"negotiation": None}
            )
        return self.negotiate_and_wait(
            context, hook, method_name="negotiation_complete", timeout=self.negotiation_timeout
        )

    def negotiation_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the negotiation's trigger fired: start the transfer under the new agreement.

        :raises EdcNegotiationFailed: the negotiation was terminated.
        :raises TaskDeferred: when deferrable, to wait for the transfer.
        """
        negotiation = complete_negotiation(
            self, event, self.edc_conn_id, self.asset_id, terminate_on_timeout=self.terminate_on_timeout
        )
        return self.start_transfer_and_wait(
            context,
            contract_id=str(negotiation["contract_agreement_id"]),
            find_earlier=False,  # asked in execute() already
            resume_kwargs={"negotiation": negotiation},
        )

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, negotiation: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the transfer's trigger fired; fetch the PULL data when ``destination`` is set.

        :raises EdcTransferFailed: the transfer was terminated.
        :raises EdcDataFetchError: the data request failed.
        """
        result = super().execute_complete(context, event)
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
