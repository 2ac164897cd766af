"""``EdcManagementHook``: the EDC connector's Management API (v3 or v4) over httpx, sync and async.

EDC facts: endpoints and bodies from the EDC connector's ``TransferProcessApiV3``/``V4``,
``ContractNegotiationApiV3``/``V4``, ``CatalogApiV3``/``V4`` and ``EdrCacheApiV3`` (v0.15.1 to v0.18.0);
``X-Api-Key`` from ``TokenBasedAuthenticationService``; error bodies are arrays of ``ApiErrorDetail``
(``message``, ``type``, ``path``, ``invalidValue``). Management API v4 has the paths of v3 under
``/v4beta`` (EDC 0.14 to 0.16) or ``/v4`` (0.17 and later) and needs ``@context`` as an array holding
``https://w3id.org/edc/connector/management/v2``, whose term definitions (``management-context-v2.jsonld``)
drop what they do not name: a callback's ``authKey``/``authCodeId`` go as ``edc:authKey``/``edc:authCodeId``
and a ``DataAddress`` needs its ``@type``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import tenacity
from airflow.sdk import BaseHook

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.connector_versions import profile
from airflow_edc_callbacks.edr import FetchResult, fetch_to_file
from airflow_edc_callbacks.exceptions import (
    EdcApiError,
    EdcDataFetchError,
    EdcEdrNotFound,
    EdcEdrRefused,
    EdcTransportError,
    ProcessBoundElsewhereError,
    StoreUnavailableError,
)
from airflow_edc_callbacks.models import (
    EDC_CONTEXT,
    EDC_NAMESPACE,
    MANAGEMENT_V2_CONTEXT,
    EndpointDataReference,
    TransferEventType,
    as_list,
    check_callback_events,
    jsonld_get,
    normalize_jsonld,
)
from airflow_edc_callbacks.store import get_store
from airflow_edc_callbacks.tokens import correlation_id_of_callback_url

__all__ = ["API_VERSIONS", "DEFAULT_PROTOCOL", "EdcConnectionSettings", "EdcManagementHook"]


def _bind(process_id: str, correlation_id: str) -> str:
    """Bind in the store; no Alembic in every task's worker process unless the tables are missing (the
    api-server and triggerer keep the schema current).

    :raises StoreUnavailableError: the store cannot be written.
    """
    try:
        return get_store(waiting=True, migrate=False).bind(process_id, correlation_id)
    except StoreUnavailableError:
        return get_store(waiting=True).bind(process_id, correlation_id)  # a store nobody created yet


API_VERSIONS = ("v3", "v4beta", "v4")
"""Management API versions a connection can select (extra ``api_version``): ``v3`` (EDC up to 0.18),
``v4beta`` (EDC 0.14 to 0.16), ``v4`` (EDC 0.17 and later)."""

DEFAULT_PROTOCOL = "dataspace-protocol-http:2025-1"
"""The DSP protocol id of EDC 0.16 and later."""

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_DCAT = "http://www.w3.org/ns/dcat#"
_ODRL = "http://www.w3.org/ns/odrl/2/"
_ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"


def _first_key(document: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in document:
            return document[key]
    return None


@dataclass(frozen=True)
class EdcConnectionSettings:
    """What the hook reads from an Airflow connection of type ``edc``.

    :ivar base_url: Management API base URL, e.g. ``http://consumer:29193/management``.
    :ivar api_key: the ``X-Api-Key`` value (connection password), or ``None``.
    :ivar api_version: ``v3``, ``v4beta`` or ``v4`` (extra ``api_version``, default ``v3``).
    :ivar protocol: the DSP protocol id (extra ``protocol``; else that of extra ``connector_version``,
        e.g. ``dataspace-protocol-http:2024/1`` for 0.13.0; else :data:`DEFAULT_PROTOCOL`).
    :ivar connector_version: the connector's EDC version (extra ``connector_version``), or ``None``.
    :ivar callback_auth_key: header name the connector sends with callbacks (extra ``callback_auth_key``).
    :ivar callback_auth_code_id: vault alias of that header's value (extra ``callback_auth_code_id``).
    :ivar tractusx: the connector is Tractus-X EDC (extra ``tractusx``: ``true``): EDRs are read with
        ``?auto_refresh=`` and refreshed with ``POST /v3/edrs/{id}/refresh`` (Tractus-X EDR API).
    """

    base_url: str
    api_key: str | None = field(repr=False)
    api_version: str = "v3"
    protocol: str = DEFAULT_PROTOCOL
    callback_auth_key: str | None = None
    callback_auth_code_id: str | None = None
    connector_version: str | None = None
    tractusx: bool = False

    @classmethod
    def from_connection(cls, conn: Any) -> EdcConnectionSettings:
        """Parse an Airflow ``Connection``.

        ``host`` may be a full URL (``http://consumer:29193/management``); otherwise the URL is built from
        extra ``scheme`` (default ``http``), ``host``, ``port`` and ``schema`` (the path).

        :raises ValueError: the connection has no host, an ``api_version`` not in :data:`API_VERSIONS` or
            one its ``connector_version`` does not serve, or a ``connector_version`` that cannot be parsed.
        """
        extra: Mapping[str, Any] = conn.extra_dejson or {}
        host = (conn.host or "").strip()
        if not host:
            raise ValueError(f"Connection {conn.conn_id!r} has no host: set it to the Management API base URL")
        if urlsplit(host).scheme in ("http", "https"):
            base_url = host
        else:
            scheme = extra.get("scheme", "http")
            port = f":{conn.port}" if conn.port else ""
            path = f"/{conn.schema.strip('/')}" if conn.schema else ""
            base_url = f"{scheme}://{host}{port}{path}"
        api_version = str(extra.get("api_version", "v3")).lower()
        if api_version not in API_VERSIONS:
            raise ValueError(
                f"Connection {conn.conn_id!r}: api_version {api_version!r} is not supported "
                f"(use one of {', '.join(API_VERSIONS)})"
            )
        connector_version = str(extra.get("connector_version") or "").strip() or None
        protocol = DEFAULT_PROTOCOL
        if connector_version:
            connector = profile(connector_version)
            if api_version not in connector.management_api_versions:
                raise ValueError(
                    f"Connection {conn.conn_id!r}: EDC {connector_version} serves no Management API {api_version!r} "
                    f"(it serves {', '.join(connector.management_api_versions)})"
                )
            protocol = connector.dsp_protocol
        return cls(
            base_url=base_url.rstrip("/"),
            api_key=conn.password or None,
            api_version=api_version,
            protocol=str(extra.get("protocol") or protocol),
            callback_auth_key=extra.get("callback_auth_key") or None,
            callback_auth_code_id=extra.get("callback_auth_code_id") or None,
            connector_version=connector_version,
            tractusx=_flag(conn.conn_id, "tractusx", extra.get("tractusx")),
        )


def _flag(conn_id: str | None, name: str, value: Any) -> bool:
    """A boolean connection extra: JSON ``true``/``false`` or the strings ``true``/``false``/``1``/``0``.

    :raises ValueError: anything else (a typo must not silently select plain EDC).
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"Connection {conn_id!r}: extra {name} must be true or false, got {value!r}")


def _masked(edr: EndpointDataReference) -> EndpointDataReference:
    """Register the EDR's tokens (access and refresh) with Airflow's secrets masker, so no log line can
    show them."""
    secrets = edr.secrets()
    if secrets:
        from airflow.sdk.log import mask_secret

        for secret in secrets:
            mask_secret(secret)
    return edr


_REFUSED = frozenset({401, 403})
"""Data plane answers that mean the token was not accepted (expired, rotated or revoked)."""

_LOCK_POLL_MAX = 0.5
"""Longest pause, in seconds, between two tries to take a busy EDR refresh lock."""


def _error_messages(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return [text[:500]] if text else []
    details = body if isinstance(body, list) else [body]
    messages = []
    for detail in details:
        if isinstance(detail, Mapping):
            message = detail.get("message") or detail.get("error") or str(detail)
            kind = detail.get("type")
            messages.append(f"{kind}: {message}" if kind else str(message))
        else:
            messages.append(str(detail))
    return messages


def _should_retry(idempotent: bool) -> Any:
    def predicate(exc: BaseException) -> bool:
        if isinstance(exc, httpx.ConnectError):
            return True  # nothing reached the connector
        if not idempotent:
            return False
        if isinstance(exc, httpx.TransportError):
            return True
        return isinstance(exc, EdcApiError) and exc.status_code in _RETRY_STATUS

    return tenacity.retry_if_exception(predicate)


class EdcManagementHook(BaseHook):
    """Client of an EDC connector's Management API, with a sync (operators) and an async (triggers) path.

    Retries connection errors and, for idempotent calls (GET), timeouts, 429 and 500/502/503/504 with
    exponential backoff. A POST that may have reached the connector is not retried, so a transfer is never started
    twice by a retry.

    :param edc_conn_id: Airflow connection of type ``edc`` (default ``edc_default``).
    :param timeout: seconds per HTTP request.
    :param retries: extra attempts after the first.
    :param retry_wait: first backoff in seconds (doubles, at most 10 s).
    :param transport: an httpx transport for the sync client (proxies, tests); default httpx's.
    :param async_transport: the same for the async client (triggers).

    Every request method raises :class:`~airflow_edc_callbacks.exceptions.EdcApiError` when the connector
    answers an error status (with its ``ApiErrorDetail`` messages, e.g. 404 ``ObjectNotFound``) and
    :class:`~airflow_edc_callbacks.exceptions.EdcTransportError` when it cannot be reached.
    """

    conn_name_attr = "edc_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "edc"
    hook_name = "EDC Management API"

    def __init__(
        self,
        edc_conn_id: str = DEFAULT_CONN_ID,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        retry_wait: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.transport = transport
        self.async_transport = async_transport
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self._settings: EdcConnectionSettings | None = None

    # -- connection ------------------------------------------------------------------------------
    @property
    def is_v4(self) -> bool:
        """Whether the connection selects Management API v4 (``v4`` or ``v4beta``)."""
        return self.settings.api_version != "v3"

    def api_path(self, resource: str) -> str:
        """The request path of ``resource`` (e.g. ``transferprocesses/x``) in the connection's API version."""
        return f"/{self.settings.api_version}/{resource.lstrip('/')}"

    async def _aapi_path(self, resource: str) -> str:
        return f"/{(await self.aget_settings()).api_version}/{resource.lstrip('/')}"

    def jsonld_context(self) -> Any:
        """The ``@context`` of request bodies: ``{"@vocab": EDC}`` for v3, ``[management/v2]`` for v4."""
        return [MANAGEMENT_V2_CONTEXT] if self.is_v4 else dict(EDC_CONTEXT)

    @property
    def settings(self) -> EdcConnectionSettings:
        """The parsed connection (sync lookup)."""
        if self._settings is None:
            self._settings = EdcConnectionSettings.from_connection(self.get_connection(self.edc_conn_id))
        return self._settings

    async def aget_settings(self) -> EdcConnectionSettings:
        """The parsed connection, looked up without blocking the event loop (triggers)."""
        if self._settings is None:
            conn = await BaseHook.aget_connection(self.edc_conn_id)
            self._settings = EdcConnectionSettings.from_connection(conn)
        return self._settings

    def _headers(self, settings: EdcConnectionSettings) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if settings.api_key:
            headers["X-Api-Key"] = settings.api_key
        return headers

    def _retrying(self, idempotent: bool) -> dict[str, Any]:
        return {
            "retry": _should_retry(idempotent),
            "stop": tenacity.stop_after_attempt(self.retries + 1),
            "wait": tenacity.wait_exponential(multiplier=self.retry_wait, max=10),
            "reraise": True,
        }

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise EdcApiError(
                    response.status_code,
                    response.request.method,
                    str(response.request.url),
                    [f"not JSON: {response.text[:200]!r}"],
                ) from None
        raise EdcApiError(
            response.status_code,
            response.request.method,
            str(response.request.url),
            _error_messages(response),
        )

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        settings = self.settings
        idempotent = method == "GET"
        try:
            with httpx.Client(base_url=settings.base_url, timeout=self.timeout, transport=self.transport) as client:
                for attempt in tenacity.Retrying(**self._retrying(idempotent)):
                    with attempt:
                        response = client.request(method, path, json=body, headers=self._headers(settings))
                        return self._check(response)
        except httpx.TransportError as err:
            raise EdcTransportError(
                f"Cannot reach the EDC Management API at {settings.base_url} ({method} {path}): {err!r}"
            ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def _asend(self, method: str, path: str, body: Any = None) -> Any:
        settings = await self.aget_settings()
        idempotent = method == "GET"
        try:
            async with httpx.AsyncClient(
                base_url=settings.base_url, timeout=self.timeout, transport=self.async_transport
            ) as client:
                async for attempt in tenacity.AsyncRetrying(**self._retrying(idempotent)):
                    with attempt:
                        response = await client.request(method, path, json=body, headers=self._headers(settings))
                        return self._check(response)
        except httpx.TransportError as err:
            raise EdcTransportError(
                f"Cannot reach the EDC Management API at {settings.base_url} ({method} {path}): {err!r}"
            ) from err
        raise AssertionError("unreachable")  # pragma: no cover

    # -- request bodies --------------------------------------------------------------------------
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
        """The JSON-LD ``TransferRequest`` body in the connection's API version.

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
            "@context": self.jsonld_context(),
            "@type": "TransferRequest",
            "protocol": protocol or self.settings.protocol,
            "counterPartyAddress": counter_party_address,
            "contractId": contract_id,
            "transferType": transfer_type,
        }
        if data_destination:
            destination = dict(data_destination)
            if self.is_v4:  # the v4 context maps "type" and the address's properties only inside a DataAddress
                destination.setdefault("@type", "DataAddress")
            body["dataDestination"] = destination
        if asset_id and not self.is_v4:  # deprecated in v3; the v4 TransferRequest has no assetId
            body["assetId"] = asset_id
        if private_properties:
            body["privateProperties"] = dict(private_properties)
        if callback_addresses:
            body["callbackAddresses"] = [dict(cb) for cb in callback_addresses]
        return body

    def callback_address(self, uri: str, events: Sequence[str] | str = ("transfer.process",)) -> dict[str, Any]:
        """A non-transactional ``CallbackAddress`` for ``uri``, with the connection's auth header if set.

        In v4 the auth fields carry the ``edc:`` prefix: the management/v2 context defines only ``uri``,
        ``transactional`` and ``events`` for a ``CallbackAddress`` and would drop plain ``authKey``.

        :param events: event name prefixes (EDC matches by prefix), e.g. ``["transfer.process"]``.
        :raises ValueError: ``events`` is empty (such an address never fires) or holds an empty prefix
            (see :func:`~airflow_edc_callbacks.models.check_callback_events`).
        """
        address: dict[str, Any] = {
            "@type": "CallbackAddress",
            "uri": uri,
            "events": list(check_callback_events(events)),
            "transactional": False,
        }
        if self.settings.callback_auth_key and self.settings.callback_auth_code_id:
            prefix = "edc:" if self.is_v4 else ""
            address[f"{prefix}authKey"] = self.settings.callback_auth_key
            address[f"{prefix}authCodeId"] = self.settings.callback_auth_code_id
        return address

    # -- transfer processes ----------------------------------------------------------------------
    def start_transfer(self, request: Mapping[str, Any]) -> str:
        """``POST /{version}/transferprocesses``; returns the new transfer process id.

        Once the connector has named the process, binds it (``EventStore.bind``) to the correlation id of
        each dynamic callback address of this deployment in the request, so that its callbacks count
        only with that token (see README, Security model). A store that cannot be reached is logged:
        the waiting trigger binds again when it starts.

        :param request: a body from :meth:`build_transfer_request`.
        :raises EdcApiError: the connector rejected it (400 with its validation messages).
        :raises EdcTransportError: the connector could not be reached.
        :raises ProcessBoundElsewhereError: the new id is bound to another task instance already.
        """
        path = self.api_path("transferprocesses")
        response = self._send("POST", path, dict(request))
        process_id = jsonld_get(response or {}, "@id")
        if not process_id:
            raise EdcApiError(200, "POST", f"{self.settings.base_url}{path}", ["no @id in IdResponse"])
        self._bind_callbacks(str(process_id), request)
        return str(process_id)

    def _bind_callbacks(self, process_id: str, request: Mapping[str, Any]) -> None:
        for address in as_list(jsonld_get(request, "callbackAddresses")):
            uri = jsonld_get(address, "uri") if isinstance(address, Mapping) else None
            correlation_id = correlation_id_of_callback_url(str(uri)) if uri else None
            if correlation_id is None:
                continue
            try:
                bound = _bind(process_id, correlation_id)
            except StoreUnavailableError as err:
                self.log.warning("Could not bind %s to its task instance now (its trigger will): %s", process_id, err)
                continue
            if bound != correlation_id:
                raise ProcessBoundElsewhereError(process_id, bound, correlation_id)

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

    async def aget_transfer_state(self, transfer_process_id: str) -> str:
        """Async :meth:`get_transfer_state`."""
        body = await self._asend("GET", await self._aapi_path(f"transferprocesses/{transfer_process_id}/state"))
        return str(jsonld_get(body or {}, "state", ""))

    def query_transfer_processes(
        self, filter_expression: Sequence[Mapping[str, Any]] = (), limit: int = 50
    ) -> list[dict[str, Any]]:
        """``POST /{version}/transferprocesses/request`` with a ``QuerySpec``; normalised processes.

        :param filter_expression: EDC criteria, e.g.
            ``[{"operandLeft": "contractId", "operator": "=", "operandRight": "..."}]``.
        :param limit: at most this many processes.
        """
        query = {
            "@context": self.jsonld_context(),
            "@type": "QuerySpec",
            "limit": limit,
            "filterExpression": [{"@type": "Criterion", **f} for f in filter_expression],
        }
        body = self._send("POST", self.api_path("transferprocesses/request"), query)
        return [dict(normalize_jsonld(p)) for p in as_list(body)]

    def find_transfer_processes(self, private_property: str, value: str) -> list[dict[str, Any]]:
        """Transfer processes whose ``privateProperties`` hold ``private_property`` = ``value``.

        The key is matched in the EDC namespace (``privateProperties.'<EDC IRI><key>'``, the quoted form
        EDC's query resolver needs for keys with dots).
        """
        criterion = {
            "operandLeft": f"privateProperties.'{EDC_NAMESPACE}{private_property}'",
            "operator": "=",
            "operandRight": value,
        }
        return self.query_transfer_processes([criterion])

    def terminate_transfer(self, transfer_process_id: str, reason: str) -> None:
        """``POST /{version}/transferprocesses/{id}/terminate`` with ``reason`` (mandatory in EDC).

        :raises EdcApiError: 404 unknown id, 409 already completed or terminated.
        """
        body = {"@context": self.jsonld_context(), "@type": "TerminateTransfer", "reason": reason}
        self._send("POST", self.api_path(f"transferprocesses/{transfer_process_id}/terminate"), body)

    async def aterminate_transfer(self, transfer_process_id: str, reason: str) -> None:
        """Async :meth:`terminate_transfer` (triggers).

        :raises EdcApiError: 404 unknown id, 409 already completed or terminated.
        """
        await self.aget_settings()  # jsonld_context() reads the settings without blocking then
        body = {"@context": self.jsonld_context(), "@type": "TerminateTransfer", "reason": reason}
        await self._asend("POST", await self._aapi_path(f"transferprocesses/{transfer_process_id}/terminate"), body)

    def _terminate_negotiation_body(self, negotiation_id: str, reason: str) -> dict[str, Any]:
        """EDC's ``TerminateNegotiation``: ``@id`` (the negotiation, mandatory in EDC's
        ``TerminateNegotiationValidator``) and ``reason``."""
        return {
            "@context": self.jsonld_context(),
            "@type": "TerminateNegotiation",
            "@id": negotiation_id,
            "reason": reason,
        }

    def terminate_negotiation(self, negotiation_id: str, reason: str) -> None:
        """``POST /{version}/contractnegotiations/{id}/terminate`` with ``reason``.

        EDC may refuse to terminate a negotiation in some states (e.g. ``REQUESTED`` while it waits for the
        provider; ``FINALIZED`` or ``TERMINATED`` already).

        :raises EdcApiError: 404 unknown id, 409 / 400 not terminable in its state.
        """
        body = self._terminate_negotiation_body(negotiation_id, reason)
        self._send("POST", self.api_path(f"contractnegotiations/{negotiation_id}/terminate"), body)

    async def aterminate_negotiation(self, negotiation_id: str, reason: str) -> None:
        """Async :meth:`terminate_negotiation` (triggers).

        :raises EdcApiError: 404 unknown id, 409 / 400 not terminable in its state.
        """
        await self.aget_settings()
        body = self._terminate_negotiation_body(negotiation_id, reason)
        await self._asend("POST", await self._aapi_path(f"contractnegotiations/{negotiation_id}/terminate"), body)

    # -- secrets ---------------------------------------------------------------------------------
    def put_secret(self, alias: str, value: str) -> bool:
        """Store a secret in the connector's vault through the Secrets API (``POST /v3/secrets``).

        The Secrets API is the EDC module ``secrets-api``, which not every connector deploys (it is not
        part of ``controlplane-base-bom``). An existing alias is updated (``PUT``).

        :returns: ``False`` when the connector has no Secrets API (404 on the route), else ``True``.
        :raises EdcApiError: the connector refused the secret.
        """
        body = {"@context": EDC_CONTEXT, "@type": "Secret", "@id": alias, "value": value}
        try:
            self._send("POST", "/v3/secrets", body)
        except EdcApiError as err:
            if err.status_code == 409:
                self._send("PUT", "/v3/secrets", body)
                return True
            if err.status_code in (404, 405):
                return False
            raise
        return True

    # -- catalog and contract negotiations -------------------------------------------------------
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
        body: dict[str, Any] = {
            "@context": self.jsonld_context(),
            "@type": "CatalogRequest",
            "counterPartyAddress": counter_party_address,
            "protocol": protocol or self.settings.protocol,
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
        return dict(self._send("POST", self.api_path("catalog/request"), body) or {})

    @staticmethod
    def find_offer(catalog: Mapping[str, Any], asset_id: str) -> dict[str, Any]:
        """The first offer (an ODRL policy with its ``@id``) for ``asset_id`` in a catalog.

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
        policy = {k: v for k, v in offer.items() if k != "@context"}
        policy.update({"@type": "Offer", "assigner": assigner, "target": target})
        if not self.is_v4:
            policy["@context"] = _ODRL_CONTEXT
        body: dict[str, Any] = {
            "@context": self.jsonld_context(),
            "@type": "ContractRequest",
            "counterPartyAddress": counter_party_address,
            "protocol": protocol or self.settings.protocol,
            "policy": policy,
        }
        if callback_addresses:
            body["callbackAddresses"] = [dict(cb) for cb in callback_addresses]
        return body

    def start_negotiation(self, request: Mapping[str, Any]) -> str:
        """``POST /{version}/contractnegotiations``; returns the new contract negotiation id.

        Binds the negotiation like :meth:`start_transfer` binds a transfer.

        :raises EdcApiError: the connector rejected it.
        :raises EdcTransportError: the connector could not be reached.
        :raises ProcessBoundElsewhereError: the new id is bound to another task instance already.
        """
        path = self.api_path("contractnegotiations")
        response = self._send("POST", path, dict(request))
        negotiation_id = jsonld_get(response or {}, "@id")
        if not negotiation_id:
            raise EdcApiError(200, "POST", f"{self.settings.base_url}{path}", ["no @id in IdResponse"])
        self._bind_callbacks(str(negotiation_id), request)
        return str(negotiation_id)

    async def aget_negotiation(self, negotiation_id: str) -> dict[str, Any]:
        """Async :meth:`get_negotiation`."""
        path = await self._aapi_path(f"contractnegotiations/{negotiation_id}")
        return dict(normalize_jsonld(await self._asend("GET", path)))

    def get_negotiation(self, negotiation_id: str) -> dict[str, Any]:
        """``GET /{version}/contractnegotiations/{id}``, normalised; ``contractAgreementId`` once finalized."""
        return dict(normalize_jsonld(self._send("GET", self.api_path(f"contractnegotiations/{negotiation_id}"))))

    def get_agreement(self, negotiation_id: str) -> dict[str, Any]:
        """``GET /{version}/contractnegotiations/{id}/agreement``, normalised (``@id`` is the contract id)."""
        path = self.api_path(f"contractnegotiations/{negotiation_id}/agreement")
        return dict(normalize_jsonld(self._send("GET", path)))

    # -- EDRs and data of PULL transfers ---------------------------------------------------------
    def query_edrs(self, filter_expression: Sequence[Mapping[str, Any]] = (), limit: int = 50) -> list[dict[str, Any]]:
        """``POST /v3/edrs/request``: the consumer's cached EDR entries (normalised), e.g. filtered on
        ``transferProcessId``, ``assetId`` or ``contractNegotiationId``. The entries hold no token.

        :raises EdcApiError: 404 when the connector has no EDR cache API (EDC module ``edr-cache-api``).
        """
        query = {
            "@context": dict(EDC_CONTEXT),
            "@type": "QuerySpec",
            "limit": limit,
            "filterExpression": [{"@type": "Criterion", **f} for f in filter_expression],
        }
        return [dict(normalize_jsonld(e)) for e in as_list(self._send("POST", "/v3/edrs/request", query))]

    def get_edr(
        self, transfer_process_id: str, *, use_callbacks: bool = True, auto_refresh: bool = True
    ) -> EndpointDataReference:
        """The EDR of a started PULL transfer, for fetching its data; keep it out of XCom and logs.

        Asks the connector's EDR cache: ``GET /{version}/edrs/{id}/dataaddress`` on a v4 connection, then
        ``GET /v3/edrs/{id}/dataaddress`` (EDC ``EdrCacheApiV3Controller``). On a Tractus-X connection
        (extra ``tractusx``) the query ``auto_refresh=true`` (or ``false``) is sent: Tractus-X EDC then
        refreshes an expired token itself before answering (its ``EdrCacheApiController``); that read runs
        under the transfer's EDR refresh lock in the callback store, so parallel tasks never refresh one
        EDR at once (eclipse-tractusx/tractusx-edc#1618). Plain EDC has no refresh: ``auto_refresh``
        changes nothing there. When the connector has no such entry or no EDR cache API (404) and
        ``use_callbacks`` is set, takes the ``dataAddress`` of the transfer's ``TransferProcessStarted``
        event from the callback store (``source = "callback"``), but only while the transfer is still
        ``STARTED`` (one state request) and no later event of it is stored: an ended transfer's token is
        revoked. Only trusted events are read (static-route ones, and those with the token of the task
        instance the transfer is bound to; see ``StoredEvent.trusted``).
        The tokens (access and refresh) are registered with Airflow's secrets masker.

        :param auto_refresh: Tractus-X: let the connector refresh an expired token.
        :raises EdcEdrNotFound: no usable EDR (not a PULL transfer, not started yet, or already ended;
            the message says what the connector answered).
        :raises EdcTransportError: the connector could not be reached.
        :raises StoreUnavailableError: Tractus-X ``auto_refresh``: the transfer's refresh lock stayed taken
            beyond twice its lease.
        """
        if auto_refresh and self.settings.tractusx:
            with self._edr_refresh_lock(transfer_process_id):
                return self._read_edr(transfer_process_id, use_callbacks=use_callbacks, auto_refresh=True)
        return self._read_edr(transfer_process_id, use_callbacks=use_callbacks, auto_refresh=False)

    def _read_edr(self, transfer_process_id: str, *, use_callbacks: bool, auto_refresh: bool) -> EndpointDataReference:
        query = f"?auto_refresh={str(auto_refresh).lower()}" if self.settings.tractusx else ""
        paths = [f"/v3/edrs/{transfer_process_id}/dataaddress{query}"]
        if self.is_v4:
            paths.insert(0, self.api_path(f"edrs/{transfer_process_id}/dataaddress{query}"))
        answers = []
        for path in paths:
            try:
                address = self._send("GET", path)
            except EdcApiError as err:
                if err.status_code != 404:
                    raise
                answers.append(f"{path} answered 404 ({'; '.join(err.messages) or 'no detail'})")
                continue
            if isinstance(address, Mapping):
                return _masked(EndpointDataReference.from_data_address(transfer_process_id, address))
            answers.append(f"{path} returned {type(address).__name__}")
        detail = "the connector's EDR cache: " + ", ".join(answers)
        if use_callbacks:
            stored, why_not = self._edr_from_callbacks(transfer_process_id)
            if stored is not None:
                return _masked(stored)
            detail += f"; the callback store: {why_not}"
        raise EdcEdrNotFound(transfer_process_id, self.settings.base_url, detail)

    def refresh_edr(
        self, transfer_process_id: str, stale: EndpointDataReference | None = None
    ) -> EndpointDataReference:
        """Refresh a transfer's EDR once, one caller at a time per transfer (Tractus-X EDC only).

        Takes the transfer's EDR refresh lock in the callback store (waiting while another task, worker
        or host holds it). With ``stale`` (the EDR the provider refused) it first reads the EDR again
        without refreshing: when its token differs, someone refreshed while this caller waited, and that
        EDR is returned. Otherwise ``POST /v3/edrs/{id}/refresh`` (Tractus-X ``EdrCacheApiController``:
        the connector sends the provider's refresh endpoint a ``grant_type=refresh_token`` request
        authenticated with a token it signs with the participant's key, as the Tractus-X refresh token
        grant profile requires; no client without that key can refresh at the provider directly).

        :param stale: the EDR whose token the provider refused, if any.
        :raises ValueError: the connection is not a Tractus-X one (EDC has no EDR refresh).
        :raises EdcApiError: the connector refused the refresh (e.g. the provider answered 4xx: the
            transfer or its agreement is no longer valid).
        :raises StoreUnavailableError: the lock stayed taken beyond twice its lease.
        """
        if not self.settings.tractusx:
            raise ValueError(
                f"Connection {self.edc_conn_id!r} is not a Tractus-X EDC connection (extra tractusx): "
                "EDC has no API to refresh an EDR"
            )
        with self._edr_refresh_lock(transfer_process_id):
            if stale is not None:
                current = self._read_edr(transfer_process_id, use_callbacks=False, auto_refresh=False)
                if current.authorization != stale.authorization:
                    self.log.info("EDR of transfer process %s was refreshed by another task", transfer_process_id)
                    return current
            address = self._send("POST", f"/v3/edrs/{transfer_process_id}/refresh")
            if not isinstance(address, Mapping):
                raise EdcApiError(
                    200,
                    "POST",
                    f"{self.settings.base_url}/v3/edrs/{transfer_process_id}/refresh",
                    ["no data address in the answer"],
                )
            self.log.info("Refreshed the EDR of transfer process %s", transfer_process_id)
            return _masked(EndpointDataReference.from_data_address(transfer_process_id, address))

    def _lock_lease(self) -> float:
        """Seconds an EDR refresh lock holds: longer than a read with every retry plus a refresh."""
        return self.timeout * (self.retries + 2) + 30.0

    @contextmanager
    def _edr_refresh_lock(self, transfer_process_id: str) -> Iterator[None]:
        """Hold the transfer's EDR refresh lock in the callback store (see
        :meth:`EventStore.try_lock_edr_refresh`); without a store, go on unlocked (logged: a refused token
        is still read again and refreshed once)."""
        holder = uuid.uuid4().hex
        lease = self._lock_lease()
        try:
            try:
                store = get_store(waiting=True, migrate=False)
                taken = store.try_lock_edr_refresh(transfer_process_id, holder, lease)
            except StoreUnavailableError:
                store = get_store(waiting=True)  # a store whose tables nobody upgraded yet
                taken = store.try_lock_edr_refresh(transfer_process_id, holder, lease)
        except StoreUnavailableError as err:
            self.log.warning("EDR of transfer process %s used without its lock: %s", transfer_process_id, err)
            yield
            return
        deadline = time.monotonic() + 2 * lease
        pause = 0.02
        while not taken:
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"The EDR refresh lock of transfer process {transfer_process_id} stayed taken for "
                    f"{2 * lease:.0f} s (its lease is {lease:.0f} s)"
                )
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX)
            taken = store.try_lock_edr_refresh(transfer_process_id, holder, lease)
        try:
            yield
        finally:
            try:
                store.unlock_edr_refresh(transfer_process_id, holder)
            except StoreUnavailableError as err:  # the lease ends it
                self.log.warning("EDR refresh lock of %s not released: %s", transfer_process_id, err)

    def _edr_from_callbacks(self, transfer_process_id: str) -> tuple[EndpointDataReference | None, str]:
        try:
            store = get_store(waiting=True)
            bound = store.binding(transfer_process_id)
            events = [e for e in store.events(process_id=transfer_process_id) if e.trusted(bound)]
        except StoreUnavailableError as err:
            return None, f"unavailable ({err})"
        started = [i for i, e in enumerate(events) if e.event_type == TransferEventType.STARTED.value]
        if not started:
            return None, "no TransferProcessStarted callback is stored that may be trusted"
        last = started[-1]
        later = [e.event_type for e in events[last + 1 :]]
        if later:
            return None, f"the transfer moved on after it started ({', '.join(later)})"
        state = self.get_transfer_state(transfer_process_id)
        if state != "STARTED":
            return None, f"the transfer is {state}"
        # every trusted Started must name one endpoint (a task's own token could announce another); the
        # connector's own static delivery is preferred, then the newest (a resumed transfer's fresh token)
        candidates = sorted((events[i] for i in started), key=lambda e: (e.via_static, e.seq))
        edrs: list[EndpointDataReference] = []
        for stored in candidates:
            address = stored.payload.get("dataAddress")
            if not isinstance(address, Mapping):
                return None, f"its TransferProcessStarted callback {stored.envelope_id} has no data address"
            try:
                edrs.append(EndpointDataReference.from_data_address(transfer_process_id, address, source="callback"))
            except ValueError as err:
                return None, str(err)
        endpoints = sorted({edr.endpoint for edr in edrs})
        if len(endpoints) > 1:
            return None, f"its TransferProcessStarted callbacks name different endpoints ({', '.join(endpoints)})"
        return edrs[-1], ""

    def fetch_data(
        self,
        transfer_process_id: str,
        destination: str | os.PathLike[str],
        *,
        path: str = "",
        params: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        auto_refresh: bool = True,
    ) -> FetchResult:
        """Download a started PULL transfer's data from the provider's public endpoint into ``destination``.

        Gets the EDR with :meth:`get_edr` and sends ``GET <endpoint>[/<path>]`` with its token; the tokens
        stay inside this call. When the provider refuses the token (401/403): reads the EDR again once
        (another task may have refreshed it) and retries with a changed token; if still refused and the
        connection is Tractus-X with ``auto_refresh``, refreshes once (:meth:`refresh_edr`: under the
        transfer's lock, and not at all when another task refreshed meanwhile) and retries once. Never
        more: then :class:`EdcEdrRefused`.

        :raises EdcEdrNotFound: no EDR is known for the transfer.
        :raises EdcEdrRefused: the provider kept refusing the EDR (names the transfer, the URL and what to do).
        :raises EdcDataFetchError: the provider's endpoint failed otherwise or could not be reached.
        :raises StoreUnavailableError: the transfer's EDR refresh lock stayed taken beyond twice its lease.
        """

        def fetch(edr: EndpointDataReference) -> FetchResult:
            return fetch_to_file(edr, destination, path=path, params=params, timeout=timeout)

        edr = self.get_edr(transfer_process_id, auto_refresh=auto_refresh)
        try:
            return fetch(edr)
        except EdcDataFetchError as err:
            if err.status_code not in _REFUSED:
                raise
            refused = err
        self.log.info(
            "The provider refused the EDR of transfer process %s (%s): reading it again",
            transfer_process_id,
            refused.status_code,
        )
        tried = "read the EDR again"
        again = self.get_edr(transfer_process_id, auto_refresh=auto_refresh)
        if again.authorization != edr.authorization:
            try:
                return fetch(again)
            except EdcDataFetchError as err:
                if err.status_code not in _REFUSED:
                    raise
                refused = err
            edr = again
        if auto_refresh and self.settings.tractusx:
            advice = (
                "Start a new transfer; if that is refused too, check the contract agreement's policy "
                "(it may have expired or no longer be satisfied)."
            )
            try:
                fresh = self.refresh_edr(transfer_process_id, stale=edr)
            except EdcApiError as err:  # the provider refused the refresh too (via the connector)
                tried = f"read the EDR again and asked the connector to refresh it, which failed ({err})"
            else:
                tried = "read the EDR again and refreshed it once"
                try:
                    return fetch(fresh)
                except EdcDataFetchError as err:
                    if err.status_code not in _REFUSED:
                        raise
                    refused = err
        else:
            advice = (
                "Start a new transfer (the provider may have terminated this one, or its policy no longer "
                "allows access)"
                + (
                    "; a Tractus-X EDC connector can refresh EDRs: set the connection's extra tractusx to true."
                    if not self.settings.tractusx
                    else "."
                )
            )
        raise EdcEdrRefused(
            transfer_process_id,
            refused.url,
            int(refused.status_code or 0),
            refused.detail,
            tried,
            advice,
        )

    def test_connection(self) -> tuple[bool, str]:
        """Query one transfer process to check the URL and API key (the UI's Test button)."""
        try:
            body = {"@context": self.jsonld_context(), "@type": "QuerySpec", "limit": 1}
            self._send("POST", self.api_path("transferprocesses/request"), body)
        except Exception as err:
            return False, str(err)
        return True, f"Management API at {self.settings.base_url} answered"
