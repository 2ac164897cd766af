"""``EdcTransferOperator``: start an EDC transfer process and resume on the connector's callback.

The step itself (start a transfer, or take over an earlier try's, and wait for it) is
:class:`~airflow_edc_callbacks.operators.transfer_step.TransferStep`, which
:class:`~airflow_edc_callbacks.operators.pipeline.EdcNegotiatedTransferOperator` composes after a negotiation.
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
from airflow_edc_callbacks.lineage.mixin import EdcLineageMixin
from airflow_edc_callbacks.operators.lifecycle import terminate_when_killed
from airflow_edc_callbacks.operators.transfer_step import TransferStep, resume_transfer
from airflow_edc_callbacks.triggers.callback import stall_seconds
from airflow_edc_callbacks.triggers.kinds import KindName

if TYPE_CHECKING:
    from airflow.sdk import Context


class EdcTransferOperator(EdcLineageMixin, BaseOperator):
    """Start a transfer process on the consumer connector and wait for it through callbacks.

    The request carries a dynamic callback address (``callbackAddresses``, events ``transfer.process``)
    whose token identifies this task instance. The task defers to
    :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger` and resumes on the terminal
    event: ``TransferProcessCompleted`` (PUSH), ``TransferProcessStarted`` (PULL, the EDR is ready) or
    ``TransferProcessTerminated`` (the task fails with the connector's reason and the transfer id).
    Deferrable, it first waits ``defer_after`` seconds in the worker on the same trigger: a transfer
    that ends within them completes the task without a deferral. With ``deferrable=False`` the worker
    runs the same trigger itself until the end. ``TransferProcessSuspended`` and
    ``TransferProcessResumed`` are logged and kept in the timeline; they never end the wait.

    A retry of the same task instance (try 2 and later) first asks the connector, in one query, for a
    transfer process an earlier try started that is not finished, or (PUSH) that COMPLETED without any
    try taking its result, and waits for it instead of starting a second one.

    :param contract_id: the contract agreement id (templated).
    :param counter_party_address: the provider's DSP address, e.g. ``http://provider:19194/protocol/2025-1``
        (templated).
    :param transfer_type: e.g. ``HttpData-PUSH`` or ``HttpData-PULL`` (templated); required, with no
        default, in every operator of this provider: it decides what the task waits for (PULL: started,
        PUSH: completed) and whether ``data_destination`` is needed, so a silent default would pick one
        of two different jobs for the user.
    :param data_destination: the ``DataAddress`` to push to, e.g. ``{"type": "HttpData", "baseUrl": ...}``;
        omit for PULL (templated).
    :param protocol: DSP protocol id; default the connection's (``dataspace-protocol-http:2025-1``) (templated).
    :param asset_id: optional asset id, sent as ``assetId`` on Management API v3 only (deprecated there,
        kept for older connectors; the v4 request has none) (templated).
    :param private_properties: extra ``privateProperties`` (templated); ``airflowCorrelationId`` is added.
    :param wait_for: ``auto`` (PULL -> ``started``, else ``completed``), ``started`` or ``completed`` (templated).
    :param edc_conn_id: the ``edc`` connection of the consumer connector (templated).
    :param timeout: how long to wait for the terminal state (seconds or timedelta; default 24 h). The
        trigger decides it: the task then fails with :class:`~airflow_edc_callbacks.exceptions.EdcTransferTimeout`
        naming the transfer, the connector, the last state and the wait (Airflow's own deferral time-out
        is set 60 s later, as a safety net).
    :param terminate_on_timeout: at the time-out, terminate the transfer on the connector before failing
        (default ``True``; a transfer already final is fine).
    :param terminate_on_kill: when a user marks the waiting task failed or success, or clears it,
        terminate the transfer (default ``True``; best effort). Deferred: on Airflow 3.3 and later (the
        trigger's ``on_kill``; never on a triggerer restart or when the trigger moved to another
        triggerer); Airflow 3.1 / 3.2 leave the transfer running. In the worker: the operator's ``on_kill``.
    :param fallback_check_interval: seconds without a callback before asking the connector for the state
        (then again after 2x, 4x... the interval, at most 1 h); default ``[edc_callbacks] fallback_check_interval``.
    :param stall_timeout: seconds (or timedelta) the transfer may stay in one non-terminal state
        (``SUSPENDED`` excepted) before the wait ends like at ``timeout``, after one state check: for a
        provider that stops without a word (e.g. a data plane that never finishes a PUSH); the error adds
        "no change from STARTED for 241 s". ``0``: never; default ``[edc_callbacks] stall_timeout`` (0).
    :param deferrable: defer to the triggerer while waiting (``True``) or wait in the worker on the same
        event store (``False``); default Airflow's ``[operators] default_deferrable`` (``False`` unless
        set).
    :param reattach: on a retry, wait for an unfinished transfer of an earlier try, or take the result of
        an earlier try's COMPLETED transfer that no try took (default ``True``).
    :param defer_after: deferrable only: seconds to wait in the worker, once the transfer started, before
        deferring; a transfer that ends within them completes the task without a deferral, with the same
        result and errors (see docs/guides/worker-first-wait.md). ``0`` defers at once; default
        ``[edc_callbacks] defer_after`` (5).

    :param counter_party_id: the provider's participant id, for lineage only (templated; optional).

    Lineage: OpenLineage facets (input the provider's asset, output the PUSH destination without its
    secrets, run facet ``edcTransfer``) and, on success, the transfer's ``extra`` on the asset event of each
    asset in ``outlets`` (see docs/guides/lineage-and-assets.md).

    Returns (XCom ``return_value``): ``transfer_process_id``, ``state``, ``asset_id``, ``contract_id``,
    ``event_type``, ``source`` (``callback`` or ``state_check``) and ``timeline`` (event types with
    epoch-millisecond times; never the EDR or its token).

    :raises EdcTransferFailed: the transfer ended ``TERMINATED``.
    :raises EdcTransferTimeout: the transfer did not reach the awaited state within ``timeout``.
    :raises EdcApiError: the connector refused the request (its validation messages included).
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "counter_party_address",
        "transfer_type",
        "data_destination",
        "protocol",
        "asset_id",
        "private_properties",
        "wait_for",
        "edc_conn_id",
        "counter_party_id",
    )
    template_fields_renderers = {"data_destination": "json", "private_properties": "json"}
    ui_color = "#c6e2ff"

    def __init__(
        self,
        *,
        contract_id: str,
        counter_party_address: str,
        transfer_type: str,
        data_destination: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        asset_id: str | None = None,
        private_properties: Mapping[str, Any] | None = None,
        wait_for: str = "auto",
        edc_conn_id: str = DEFAULT_CONN_ID,
        timeout: timedelta | float = timedelta(hours=24),
        fallback_check_interval: float | None = None,
        stall_timeout: timedelta | float | None = None,
        deferrable: bool = default_deferrable(),
        reattach: bool = True,
        terminate_on_timeout: bool = True,
        terminate_on_kill: bool = True,
        defer_after: float | None = None,
        counter_party_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.counter_party_address = counter_party_address
        self.transfer_type = transfer_type
        self.data_destination = data_destination
        self.protocol = protocol
        self.asset_id = asset_id
        self.private_properties = private_properties
        self.wait_for = wait_for
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        self.fallback_check_interval = fallback_check_interval
        self.stall_timeout = stall_seconds(stall_timeout)
        self.deferrable = deferrable
        self.reattach = reattach
        self.terminate_on_timeout = terminate_on_timeout
        self.terminate_on_kill = terminate_on_kill
        self.defer_after = None if defer_after is None else non_negative_seconds("defer_after", defer_after)
        self.counter_party_id = counter_party_id
        self._waiting_on: tuple[KindName, str] | None = None  # what an in-worker wait waits for (on_kill)

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    def _request_asset_id(self) -> str | None:
        """The ``assetId`` the transfer request carries (EDC deprecates it; kept for older connectors)."""
        return self.asset_id

    def _transfer_step(self) -> TransferStep:
        """The step from the rendered fields.

        :raises ValueError: ``wait_for`` or ``timeout`` is not valid.
        """
        return TransferStep.of(self, asset_id=self._request_asset_id())

    def execute(self, context: Context) -> Any:
        """Start the transfer (or find an earlier try's) and wait for it: defer, or wait in the worker.

        :raises TaskDeferred: when deferrable (Airflow's way to defer).
        """
        step = self._transfer_step()
        hook = self._hook()
        transfer_id = step.find_unfinished(self, context, hook) or step.start(self, context, hook, self.contract_id)
        return step.wait(self, context, hook, transfer_id, self.execute_complete)

    def find_unfinished_transfer(self, context: Context, hook: EdcManagementHook) -> str | None:
        """The transfer process an earlier try of this task instance started that this try waits for
        (see :meth:`~airflow_edc_callbacks.operators.transfer_step.TransferStep.find_unfinished`); ``None`` on
        the first try or with ``reattach=False``."""
        return self._transfer_step().find_unfinished(self, context, hook)

    def on_kill(self) -> None:
        """The task was killed while it waited in the worker (non-deferrable): terminate the transfer it
        waits for when ``terminate_on_kill`` is set (best effort, logged, never raised)."""
        terminate_when_killed(self, self._hook(), self._waiting_on, self.terminate_on_kill)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: return the result, or raise with the connector's reason.

        :raises TriggerEventError: no event, or a malformed one.
        :raises EdcTransferFailed: the transfer was terminated.
        :raises EdcTransferTimeout: the trigger's time-out passed (the transfer is terminated first when
            ``terminate_on_timeout``).
        """
        self.lineage_note(event)
        try:
            result = resume_transfer(
                self, event, self.edc_conn_id, self._hook, terminate_on_timeout=self.terminate_on_timeout
            )
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise
        self.emit_transfer_assets(context, result)
        return result
