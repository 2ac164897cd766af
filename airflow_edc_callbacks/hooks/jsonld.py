"""Request bodies of the EDC Management API and the reading of its JSON-LD answers; no I/O, no Airflow.

Every builder takes the Management API version (``v3``, ``v4beta`` or ``v4``) and returns a plain JSON
dict. EDC facts: ``TransferRequest`` as checked by EDC's ``TransferRequestValidator``, ``ContractRequest``
by ``ContractRequestValidator``, ``CatalogRequest`` by ``CatalogRequestValidator`` (v0.15.1 to v0.18.0).
v3 bodies use ``{"@vocab": EDC}``; v4 bodies the array ``[management/v2]``, whose term definitions
(``management-context-v2.jsonld``) drop what they do not name: a callback's ``authKey``/``authCodeId`` go
as ``edc:authKey``/``edc:authCodeId`` and a ``DataAddress`` needs its ``@type``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_edc_callbacks.models import (
    EDC_CONTEXT,
    EDC_NAMESPACE,
    MANAGEMENT_V2_CONTEXT,
    as_list,
    check_callback_events,
)

API_VERSIONS = ("v3", "v4beta", "v4")
"""Management API versions a connection can select (extra ``api_version``): ``v3`` (EDC up to 0.18),
``v4beta`` (EDC 0.14 to 0.16), ``v4`` (EDC 0.17 and later)."""

DEFAULT_PROTOCOL = "dataspace-protocol-http:2025-1"
"""The DSP protocol id of EDC 0.16 and later."""

_DCAT = "http://www.w3.org/ns/dcat#"
_ODRL = "http://www.w3.org/ns/odrl/2/"
_ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"


def is_v4(api_version: str) -> bool:
    """Whether ``api_version`` is a Management API v4 (``v4`` or ``v4beta``)."""
    return api_version != "v3"


def api_path(api_version: str, resource: str) -> str:
    """The request path of ``resource`` (e.g. ``transferprocesses/x``) in ``api_version``: ``/v3/...``."""
    return f"/{api_version}/{resource.lstrip('/')}"


def jsonld_context(api_version: str) -> Any:
    """The ``@context`` of request bodies: ``{"@vocab": EDC}`` for v3, ``[management/v2]`` for v4."""
    return [MANAGEMENT_V2_CONTEXT] if is_v4(api_version) else dict(EDC_CONTEXT)


def transfer_request(
    api_version: str,
    *,
    protocol: str,
    counter_party_address: str,
    contract_id: str,
    transfer_type: str,
    data_destination: Mapping[str, Any] | None = None,
    callback_addresses: Sequence[Mapping[str, Any]] = (),
    private_properties: Mapping[str, Any] | None = None,
    asset_id: str | None = None,
) -> dict[str, Any]:
    """The JSON-LD ``TransferRequest`` body.

    :param asset_id: sent in v3 only (deprecated there; the v4 ``TransferRequest`` has no ``assetId``).
    :raises ValueError: a mandatory field is empty (``counterPartyAddress``, ``contractId``,
        ``transferType`` are mandatory for EDC's ``TransferRequestValidator``).
    """
    for name, value in (
        ("counter_party_address", counter_party_address),
        ("contract_id", contract_id),
        ("transfer_type", transfer_type),
    ):
        if not value:
            raise ValueError(f"{name} must not be empty")
    body: dict[str, Any] = {
        "@context": jsonld_context(api_version),
        "@type": "TransferRequest",
        "protocol": protocol,
        "counterPartyAddress": counter_party_address,
        "contractId": contract_id,
        "transferType": transfer_type,
    }
    if data_destination:
        destination = dict(data_destination)
        if is_v4(api_version):  # the v4 context maps "type" and the address's properties only inside a DataAddress
            destination.setdefault("@type", "DataAddress")
        body["dataDestination"] = destination
    if asset_id and not is_v4(api_version):
        body["assetId"] = asset_id
    if private_properties:
        body["privateProperties"] = dict(private_properties)
    if callback_addresses:
        body["callbackAddresses"] = [dict(cb) for cb in callback_addresses]
    return body


def callback_address(
    api_version: str,
    uri: str,
    events: Sequence[str] | str,
    *,
    auth_key: str | None = None,
    auth_code_id: str | None = None,
) -> dict[str, Any]:
    """A non-transactional ``CallbackAddress`` for ``uri``; with ``auth_key`` and ``auth_code_id`` (both or
    neither) the connector sends that header with the vault secret of that alias.

    :param events: event name prefixes (EDC matches by prefix), e.g. ``["transfer.process"]``.
    :raises ValueError: ``events`` is empty or holds an empty prefix
        (see :func:`~airflow_edc_callbacks.models.check_callback_events`).
    """
    address: dict[str, Any] = {
        "@type": "CallbackAddress",
        "uri": uri,
        "events": list(check_callback_events(events)),
        "transactional": False,
    }
    if auth_key and auth_code_id:
        prefix = "edc:" if is_v4(api_version) else ""
        address[f"{prefix}authKey"] = auth_key
        address[f"{prefix}authCodeId"] = auth_code_id
    return address


def query_spec(
    api_version: str, *, limit: int, filter_expression: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """An EDC ``QuerySpec``; each criterion gets ``@type: Criterion`` (``filterExpression`` only when given).

    :param filter_expression: EDC criteria, e.g.
        ``[{"operandLeft": "contractId", "operator": "=", "operandRight": "..."}]``.
    """
    query: dict[str, Any] = {"@context": jsonld_context(api_version), "@type": "QuerySpec", "limit": limit}
    if filter_expression is not None:
        query["filterExpression"] = [{"@type": "Criterion", **f} for f in filter_expression]
    return query


def private_property_criterion(key: str, value: str) -> dict[str, Any]:
    """The criterion ``privateProperties.'<EDC IRI><key>' = value`` (the quoted form EDC's query resolver
    needs for keys with dots)."""
    return {"operandLeft": f"privateProperties.'{EDC_NAMESPACE}{key}'", "operator": "=", "operandRight": value}


def terminate_transfer(api_version: str, reason: str) -> dict[str, Any]:
    """EDC's ``TerminateTransfer`` (``reason`` is mandatory in EDC)."""
    return {"@context": jsonld_context(api_version), "@type": "TerminateTransfer", "reason": reason}


def terminate_negotiation(api_version: str, negotiation_id: str, reason: str) -> dict[str, Any]:
    """EDC's ``TerminateNegotiation``: ``@id`` (the negotiation, mandatory in EDC's
    ``TerminateNegotiationValidator``) and ``reason``."""
    return {
        "@context": jsonld_context(api_version),
        "@type": "TerminateNegotiation",
        "@id": negotiation_id,
        "reason": reason,
    }


def secret(alias: str, value: str) -> dict[str, Any]:
    """A ``Secret`` of EDC's Secrets API (``/v3/secrets``, v3 context whatever the connection's version)."""
    return {"@context": EDC_CONTEXT, "@type": "Secret", "@id": alias, "value": value}


def catalog_request(
    api_version: str,
    *,
    protocol: str,
    counter_party_address: str,
    counter_party_id: str | None = None,
    asset_id: str | None = None,
) -> dict[str, Any]:
    """A ``CatalogRequest``.

    :param counter_party_id: the provider's participant id; EDC's ``CatalogRequestValidator`` requires it
        from EDC 0.16 on (0.15 accepts a request without it).
    :param asset_id: only the dataset with this id (a ``querySpec`` filter on the EDC ``id``).
    """
    body: dict[str, Any] = {
        "@context": jsonld_context(api_version),
        "@type": "CatalogRequest",
        "counterPartyAddress": counter_party_address,
        "protocol": protocol,
    }
    if counter_party_id:
        body["counterPartyId"] = counter_party_id
    if asset_id:
        criterion = {
            "@type": "Criterion",
            "operandLeft": f"{EDC_NAMESPACE}id",
            "operator": "=",
            "operandRight": asset_id,
        }
        body["querySpec"] = {"@type": "QuerySpec", "filterExpression": [criterion]}
    return body


def _first_key(document: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in document:
            return document[key]
    return None


def find_offer(catalog: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
    """The first offer (an ODRL policy with its ``@id``, without ``@context``) for ``asset_id`` in a catalog.

    Datasets and offers may come back as an object or an array, under ``dataset`` / ``dcat:dataset``
    / the DCAT IRI and ``hasPolicy`` / ``odrl:hasPolicy`` / the ODRL IRI (DSP 2025-1 or older contexts).

    :raises ValueError: the asset is not in the catalog, or it has no offer.
    """
    datasets = as_list(_first_key(catalog, "dataset", "dcat:dataset", f"{_DCAT}dataset"))
    matching = [d for d in datasets if isinstance(d, Mapping) and d.get("@id") == asset_id]
    if not matching:
        ids = [d.get("@id") for d in datasets if isinstance(d, Mapping)]
        raise ValueError(f"Asset {asset_id!r} is not in the catalog of {catalog.get('participantId')}: {ids}")
    offers = as_list(_first_key(matching[0], "hasPolicy", "odrl:hasPolicy", f"{_ODRL}hasPolicy"))
    if not offers:
        raise ValueError(f"Asset {asset_id!r} has no offer in the catalog of {catalog.get('participantId')}")
    return {k: v for k, v in dict(offers[0]).items() if k != "@context"}


def contract_request(
    api_version: str,
    *,
    protocol: str,
    counter_party_address: str,
    offer: Mapping[str, Any],
    assigner: str,
    target: str,
    callback_addresses: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The ``ContractRequest`` body for an offer from :func:`find_offer`.

    In v3 the policy carries the ODRL context, so ``assigner`` / ``target`` expand to ODRL terms as
    EDC's ``ContractRequestValidator`` needs; the v4 context defines them itself.
    """
    policy = {k: v for k, v in offer.items() if k != "@context"}
    policy.update({"@type": "Offer", "assigner": assigner, "target": target})
    if not is_v4(api_version):
        policy["@context"] = _ODRL_CONTEXT
    body: dict[str, Any] = {
        "@context": jsonld_context(api_version),
        "@type": "ContractRequest",
        "counterPartyAddress": counter_party_address,
        "protocol": protocol,
        "policy": policy,
    }
    if callback_addresses:
        body["callbackAddresses"] = [dict(cb) for cb in callback_addresses]
    return body
