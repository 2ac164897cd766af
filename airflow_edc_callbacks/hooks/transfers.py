"""Transfer process methods of the EDC Management API (EDC ``TransferProcessApiV3``/``V4``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_edc_callbacks.hooks import jsonld
from airflow_edc_callbacks.hooks.base import EdcHookBase
from airflow_edc_callbacks.models import as_list, jsonld_get, normalize_jsonld


class TransferProcessMethods(EdcHookBase):
    """Build and start transfers, read their state, query and terminate them."""

    def build_transfer_request(
        self,
        *,
        counter_party_address: str,
        contract_id: str,
        transfer_type: str,
        data_destination: Mapping[str, Any] | None = None,
        protocol: str | None = None,
        callback_addresses: Sequence[Mapping[str, Any]] = (),
        private_properties: Mapping[str, Any] | None = None,
        asset_id: str | None = None,
    ) -> dict[str, Any]:
        """The JSON-LD ``TransferRequest`` body in the connection's API version (see
        :func:`~.jsonld.transfer_request`); ``protocol`` defaults to the connection's.

        :raises ValueError: a mandatory field is empty (``counterPartyAddress``, ``contractId``,
            ``transferType`` are mandatory for EDC's ``TransferRequestValidator``).
        """
        return jsonld.transfer_request(
            self.settings.api_version,
            protocol=protocol or self.settings.protocol,
            counter_party_address=counter_party_address,
            contract_id=contract_id,
            transfer_type=transfer_type,
            data_destination=data_destination,
            callback_addresses=callback_addresses,
            private_properties=private_properties,
            asset_id=asset_id,
        )

    def callback_address(self, uri: str, events: Sequence[str] | str = ("transfer.process",)) -> dict[str, Any]:
        """A non-transactional ``CallbackAddress`` for ``uri``, with the connection's auth header if set.

        In v4 the auth fields carry the ``edc:`` prefix: the management/v2 context defines only ``uri``,
        ``transactional`` and ``events`` for a ``CallbackAddress`` and would drop plain ``authKey``.

        :param events: event name prefixes (EDC matches by prefix), e.g. ``["transfer.process"]``.
        :raises ValueError: ``events`` is empty (such an address never fires) or holds an empty prefix
            (see :func:`~airflow_edc_callbacks.models.check_callback_events`).
        """
        settings = self.settings
        return jsonld.callback_address(
            settings.api_version,
            uri,
            events,
            auth_key=settings.callback_auth_key,
            auth_code_id=settings.callback_auth_code_id,
        )

    def start_transfer(self, request: Mapping[str, Any]) -> str:
        """``POST /{version}/transferprocesses``; returns the new transfer process id.

        With a ledger (``EdcManagementHook(ledger=...)``), once the connector has named the process, binds
        it to the correlation id of each dynamic callback address of this deployment in the request, so
        that its callbacks count only with that token (see docs/security.md). A store that cannot
        be reached is logged: the waiting trigger binds again when it starts.

        :param request: a body from :meth:`build_transfer_request`.
        :raises EdcApiError: the connector rejected it (400 with its validation messages).
        :raises EdcTransportError: the connector could not be reached.
        :raises ProcessBoundElsewhereError: the new id is bound to another task instance already.
        """
        return self._start("transferprocesses", request)

    def get_transfer_process(self, transfer_process_id: str) -> dict[str, Any]:
        """``GET /{version}/transferprocesses/{id}``, normalised (see :func:`~.models.normalize_jsonld`)."""
        return dict(normalize_jsonld(self._send("GET", self.api_path(f"transferprocesses/{transfer_process_id}"))))

    async def aget_transfer_process(self, transfer_process_id: str) -> dict[str, Any]:
        """Async :meth:`get_transfer_process`."""
        path = await self._aapi_path(f"transferprocesses/{transfer_process_id}")
        return dict(normalize_jsonld(await self._asend("GET", path)))

    def get_transfer_state(self, transfer_process_id: str) -> str:
        """``GET /{version}/transferprocesses/{id}/state``: the state name, e.g. ``STARTED``, ``COMPLETED``."""
        body = self._send("GET", self.api_path(f"transferprocesses/{transfer_process_id}/state"))
        return str(jsonld_get(body or {}, "state", ""))

    def query_transfer_processes(
        self, filter_expression: Sequence[Mapping[str, Any]] = (), limit: int = 50
    ) -> list[dict[str, Any]]:
        """``POST /{version}/transferprocesses/request`` with a ``QuerySpec``; normalised processes.

        :param filter_expression: EDC criteria, e.g.
            ``[{"operandLeft": "contractId", "operator": "=", "operandRight": "..."}]``.
        :param limit: at most this many processes.
        """
        query = jsonld.query_spec(self.settings.api_version, limit=limit, filter_expression=filter_expression)
        body = self._send("POST", self.api_path("transferprocesses/request"), query)
        return [dict(normalize_jsonld(p)) for p in as_list(body)]

    def find_transfer_processes(self, private_property: str, value: str) -> list[dict[str, Any]]:
        """Transfer processes whose ``privateProperties`` hold ``private_property`` = ``value``.

        The key is matched in the EDC namespace (``privateProperties.'<EDC IRI><key>'``, the quoted form
        EDC's query resolver needs for keys with dots).
        """
        return self.query_transfer_processes([jsonld.private_property_criterion(private_property, value)])

    def terminate_transfer(self, transfer_process_id: str, reason: str) -> None:
        """``POST /{version}/transferprocesses/{id}/terminate`` with ``reason`` (mandatory in EDC).

        :raises EdcApiError: 404 unknown id, 409 already completed or terminated.
        """
        body = jsonld.terminate_transfer(self.settings.api_version, reason)
        self._send("POST", self.api_path(f"transferprocesses/{transfer_process_id}/terminate"), body)

    async def aterminate_transfer(self, transfer_process_id: str, reason: str) -> None:
        """Async :meth:`terminate_transfer` (triggers).

        :raises EdcApiError: 404 unknown id, 409 already completed or terminated.
        """
        settings = await self.aget_settings()
        body = jsonld.terminate_transfer(settings.api_version, reason)
        await self._asend("POST", await self._aapi_path(f"transferprocesses/{transfer_process_id}/terminate"), body)
