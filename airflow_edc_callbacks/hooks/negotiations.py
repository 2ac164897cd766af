"""Catalog and contract negotiation methods of the EDC Management API (EDC ``CatalogApiV3``/``V4`` and
``ContractNegotiationApiV3``/``V4``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_edc_callbacks.hooks import jsonld
from airflow_edc_callbacks.hooks.base import EdcHookBase
from airflow_edc_callbacks.models import normalize_jsonld


class NegotiationMethods(EdcHookBase):
    """Request a catalog, negotiate a contract, read and terminate negotiations."""

    def request_catalog(
        self,
        counter_party_address: str,
        *,
        counter_party_id: str | None = None,
        asset_id: str | None = None,
        protocol: str | None = None,
    ) -> dict[str, Any]:
        """``POST /{version}/catalog/request``: the provider's catalog as this consumer sees it (raw JSON-LD).

        :param counter_party_id: the provider's participant id; EDC's ``CatalogRequestValidator`` requires it
            from EDC 0.16 on (0.15 accepts a request without it).
        :param asset_id: only the dataset with this id (a ``querySpec`` filter on the EDC ``id``).
        """
        body = jsonld.catalog_request(
            self.settings.api_version,
            protocol=protocol or self.settings.protocol,
            counter_party_address=counter_party_address,
            counter_party_id=counter_party_id,
            asset_id=asset_id,
        )
        return dict(self._send("POST", self.api_path("catalog/request"), body) or {})

    @staticmethod
    def find_offer(catalog: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
        """The first offer (an ODRL policy with its ``@id``) for ``asset_id`` in a catalog
        (see :func:`~.jsonld.find_offer`).

        :raises ValueError: the asset is not in the catalog, or it has no offer.
        """
        return jsonld.find_offer(catalog, asset_id)

    def build_contract_request(
        self,
        *,
        counter_party_address: str,
        offer: Mapping[str, Any],
        assigner: str,
        target: str,
        callback_addresses: Sequence[Mapping[str, Any]] = (),
        protocol: str | None = None,
    ) -> dict[str, Any]:
        """The ``ContractRequest`` body for an offer from :meth:`find_offer` in the connection's API version.

        In v3 the policy carries the ODRL context, so ``assigner`` / ``target`` expand to ODRL terms as
        EDC's ``ContractRequestValidator`` needs; the v4 context defines them itself.
        """
        return jsonld.contract_request(
            self.settings.api_version,
            protocol=protocol or self.settings.protocol,
            counter_party_address=counter_party_address,
            offer=offer,
            assigner=assigner,
            target=target,
            callback_addresses=callback_addresses,
        )

    def start_negotiation(self, request: Mapping[str, Any]) -> str:
        """``POST /{version}/contractnegotiations``; returns the new contract negotiation id.

        Binds the negotiation like :meth:`~.transfers.TransferProcessMethods.start_transfer` binds a transfer.

        :raises EdcApiError: the connector rejected it.
        :raises EdcTransportError: the connector could not be reached.
        :raises ProcessBoundElsewhereError: the new id is bound to another task instance already.
        """
        return self._start("contractnegotiations", request)

    def get_negotiation(self, negotiation_id: str) -> dict[str, Any]:
        """``GET /{version}/contractnegotiations/{id}``, normalised; ``contractAgreementId`` once finalized."""
        return dict(normalize_jsonld(self._send("GET", self.api_path(f"contractnegotiations/{negotiation_id}"))))

    async def aget_negotiation(self, negotiation_id: str) -> dict[str, Any]:
        """Async :meth:`get_negotiation`."""
        path = await self._aapi_path(f"contractnegotiations/{negotiation_id}")
        return dict(normalize_jsonld(await self._asend("GET", path)))

    def get_agreement(self, negotiation_id: str) -> dict[str, Any]:
        """``GET /{version}/contractnegotiations/{id}/agreement``, normalised (``@id`` is the contract id)."""
        path = self.api_path(f"contractnegotiations/{negotiation_id}/agreement")
        return dict(normalize_jsonld(self._send("GET", path)))

    def terminate_negotiation(self, negotiation_id: str, reason: str) -> None:
        """``POST /{version}/contractnegotiations/{id}/terminate`` with ``reason``.

        EDC may refuse to terminate a negotiation in some states (e.g. ``REQUESTED`` while it waits for the
        provider; ``FINALIZED`` or ``TERMINATED`` already).

        :raises EdcApiError: 404 unknown id, 409 / 400 not terminable in its state.
        """
        body = jsonld.terminate_negotiation(self.settings.api_version, negotiation_id, reason)
        self._send("POST", self.api_path(f"contractnegotiations/{negotiation_id}/terminate"), body)

    async def aterminate_negotiation(self, negotiation_id: str, reason: str) -> None:
        """Async :meth:`terminate_negotiation` (triggers).

        :raises EdcApiError: 404 unknown id, 409 / 400 not terminable in its state.
        """
        settings = await self.aget_settings()
        body = jsonld.terminate_negotiation(settings.api_version, negotiation_id, reason)
        await self._asend("POST", await self._aapi_path(f"contractnegotiations/{negotiation_id}/terminate"), body)
