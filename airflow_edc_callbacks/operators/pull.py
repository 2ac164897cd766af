"""``EdcPullDataOperator``: fetch a started PULL transfer's data with its EDR into a local file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.lineage.facets import TransferFacts
from airflow_edc_callbacks.lineage.mixin import EdcLineageMixin
from airflow_edc_callbacks.operators.lifecycle import terminate_process

if TYPE_CHECKING:
    from airflow.sdk import Context


class EdcPullDataOperator(EdcLineageMixin, BaseOperator):
    """Download the data of a started PULL transfer from the provider's public endpoint.

    The EDR (endpoint and token) is read through :meth:`EdcManagementHook.get_edr` inside the task: the
    token never goes to XCom, the rendered template fields or the log.

    :param transfer_process_id: the consumer's transfer process id, e.g.
        ``"{{ ti.xcom_pull('pull_transfer')['transfer_process_id'] }}"`` (templated).
    :param destination: the local file to write (templated); parent directories are created, an existing
        file is replaced only once the download is complete.
    :param path: appended to the EDR's endpoint, for assets with ``proxyPath`` (templated).
    :param query_params: query parameters, for assets with ``proxyQueryParams`` (templated).
    :param edc_conn_id: the ``edc`` connection of the consumer connector (templated).
    :param request_timeout: seconds for connecting and between received chunks.
    :param terminate_after_fetch: once the data landed, terminate the transfer process on the connector
        (default ``False``): a PULL transfer otherwise stays ``STARTED``, its EDR usable, until the
        provider ends it. A transfer already final is fine; a failing terminate is a warning in the log,
        never a failure of the task (see :func:`terminate_after_fetch`).
    :param counter_party_address: the provider's DSP address, for lineage only (templated; optional): it
        names the input dataset's namespace (without it the OpenLineage events have no input).

    Lineage: OpenLineage facets (input the provider's asset, output the file written, run facet
    ``edcTransfer`` with ``size`` and ``sha256``; the asset and contract ids come from the transfer's stored
    callbacks, no connector request) and, on success, the asset event ``extra`` of each asset in ``outlets``:
    ``transfer_process_id``, ``asset_id``, ``contract_id``, ``source`` (``None``: the fetch waited for
    nothing), ``file``, ``size``, ``sha256`` (see docs/guides/lineage-and-assets.md).

    Returns (XCom): ``transfer_process_id``, ``url`` (no token), ``file``, ``size`` (bytes), ``sha256``,
    ``content_type``, ``edr_source`` (``connector`` or ``callback``) and, with ``terminate_after_fetch``,
    ``terminated`` (``True`` when the connector took the terminate or the transfer was final already).

    :raises EdcEdrNotFound: no EDR is known for the transfer (not PULL, not started, or ended).
    :raises EdcEdrRefused: the provider kept refusing the EDR after it was read again (and, on a Tractus-X
        connection, refreshed once; see :meth:`EdcManagementHook.fetch_data`).
    :raises EdcDataFetchError: the provider's endpoint failed.
    """

    template_fields: Sequence[str] = (
        "transfer_process_id",
        "destination",
        "path",
        "query_params",
        "edc_conn_id",
        "counter_party_address",
    )
    template_fields_renderers = {"query_params": "json"}
    ui_color = "#e1d5e7"

    def __init__(
        self,
        *,
        transfer_process_id: str,
        destination: str,
        path: str = "",
        query_params: Mapping[str, str] | None = None,
        edc_conn_id: str = DEFAULT_CONN_ID,
        request_timeout: float = 60.0,
        terminate_after_fetch: bool = False,
        counter_party_address: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transfer_process_id = transfer_process_id
        self.destination = destination
        self.path = path
        self.query_params = query_params
        self.edc_conn_id = edc_conn_id
        self.request_timeout = request_timeout
        self.terminate_after_fetch = terminate_after_fetch
        self.counter_party_address = counter_party_address

    def _hook(self) -> EdcManagementHook:
        return EdcManagementHook(self.edc_conn_id, ledger=StoreLedger())

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.transfer_process_id or not self.destination:
            raise ValueError(
                f"transfer_process_id and destination must not be empty "
                f"(got {self.transfer_process_id!r}, {self.destination!r})"
            )
        hook = self._hook()
        try:
            result = pull_data(
                self,
                hook,
                self.transfer_process_id,
                self.destination,
                path=self.path,
                query_params=self.query_params,
                request_timeout=self.request_timeout,
            )
        except EdcCallbacksError as err:
            self.lineage_failed(err)
            raise
        self.lineage_note(file=result.get("file"), size=result.get("size"), sha256=result.get("sha256"))
        if self.terminate_after_fetch:
            result["terminated"] = terminate_after_fetch(self, hook, self.transfer_process_id)
        if self.outlets:
            facts = self.lineage_facts()
            ids = {"transfer_process_id": self.transfer_process_id, "asset_id": facts.asset_id}
            self.emit_transfer_assets(context, {**ids, "contract_id": facts.contract_id}, result)
        return result

    def lineage_facts(self) -> TransferFacts:
        """The rendered fields (the destination is the output) and what the transfer's stored callbacks say
        (asset, contract, transfer type; read from the store once per operator object)."""
        known = self.lineage_known()
        if "_stored" not in known and isinstance(self.transfer_process_id, str) and self.transfer_process_id:
            known["_stored"] = StoreLedger().transfer_facts(self.transfer_process_id)
        facts = super().lineage_facts().merged(**known.get("_stored", {}))
        return facts.merged(file=self.destination) if isinstance(self.destination, str) else facts


def pull_data(
    task: BaseOperator,
    hook: EdcManagementHook,
    transfer_process_id: str,
    destination: str,
    *,
    path: str = "",
    query_params: Mapping[str, str] | None = None,
    request_timeout: float = 60.0,
) -> dict[str, Any]:
    """Fetch the data of ``transfer_process_id`` into ``destination`` and log what arrived.

    :returns: the XCom result described on :class:`EdcPullDataOperator`.
    :raises EdcEdrNotFound: no EDR is known for the transfer.
    :raises EdcEdrRefused: the provider kept refusing the EDR (see :meth:`EdcManagementHook.fetch_data`).
    :raises EdcDataFetchError: the provider's endpoint failed.
    """
    result = hook.fetch_data(transfer_process_id, destination, path=path, params=query_params, timeout=request_timeout)
    task.log.info(
        "Fetched %d bytes (sha256 %s, %s) of transfer process %s from %s into %s (EDR from the %s)",
        result.size,
        result.sha256,
        result.content_type,
        transfer_process_id,
        result.url,
        result.file,
        result.edr_source,
    )
    return result.as_dict()


def terminate_after_fetch(task: BaseOperator, hook: EdcManagementHook, transfer_process_id: str) -> bool:
    """Terminate a PULL transfer whose data landed; never raises (the data is there, the task succeeds).

    ``POST /{version}/transferprocesses/{id}/terminate`` (EDC ``TerminateTransfer``, with a reason naming
    the task), through :func:`~airflow_edc_callbacks.operators.lifecycle.terminate_process`: a transfer
    EDC refuses to terminate (409, or 400 on some versions) that one state request shows final already
    counts as terminated; any other failure, or an unreachable connector, is a warning.

    :returns: ``True`` when the connector accepted the terminate or the transfer was final already.
    """
    return terminate_process(
        task.log, hook, "transfer", transfer_process_id, f"data fetched by Airflow task {task.task_id}"
    ).done
