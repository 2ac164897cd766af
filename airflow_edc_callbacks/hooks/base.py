"""``EdcHookBase``: connection settings, transport and the single retry policy of the EDC Management API.

Errors: bodies of error answers are arrays of EDC's ``ApiErrorDetail`` (``message``, ``type``, ``path``,
``invalidValue``); the API key goes in ``X-Api-Key`` (EDC ``TokenBasedAuthenticationService``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import tenacity
from airflow.sdk import BaseHook

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.connector_versions import profile
from airflow_edc_callbacks.exceptions import (
    EdcApiError,
    EdcTransportError,
    ProcessBoundElsewhereError,
    StoreUnavailableError,
)
from airflow_edc_callbacks.hooks import jsonld
from airflow_edc_callbacks.models import as_list, jsonld_get
from airflow_edc_callbacks.tokens import correlation_id_of_callback_url

if TYPE_CHECKING:
    from airflow_edc_callbacks.hooks.ledger import CallbackLedger

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class EdcConnectionSettings:
    """What the hook reads from an Airflow connection of type ``edc``.

    :ivar base_url: Management API base URL, e.g. ``http://consumer:29193/management``.
    :ivar api_key: the ``X-Api-Key`` value (connection password), or ``None``.
    :ivar api_version: ``v3``, ``v4beta`` or ``v4`` (extra ``api_version``, default ``v3``).
    :ivar protocol: the DSP protocol id (extra ``protocol``; else that of extra ``connector_version``,
        e.g. ``dataspace-protocol-http:2024/1`` for 0.13.0; else :data:`~.jsonld.DEFAULT_PROTOCOL`).
    :ivar connector_version: the connector's EDC version (extra ``connector_version``), or ``None``.
    :ivar callback_auth_key: header name the connector sends with callbacks (extra ``callback_auth_key``).
    :ivar callback_auth_code_id: vault alias of that header's value (extra ``callback_auth_code_id``).
    :ivar tractusx: the connector is Tractus-X EDC (extra ``tractusx``: ``true``): EDRs are read with
        ``?auto_refresh=`` and refreshed with ``POST /v3/edrs/{id}/refresh`` (Tractus-X EDR API).
    """

    base_url: str
    api_key: str | None = field(repr=False)
    api_version: str = "v3"
    protocol: str = jsonld.DEFAULT_PROTOCOL
    callback_auth_key: str | None = None
    callback_auth_code_id: str | None = None
    connector_version: str | None = None
    tractusx: bool = False

    @classmethod
    def from_connection(cls, conn: Any) -> EdcConnectionSettings:
        """Parse an Airflow ``Connection``.

        ``host`` may be a full URL (``http://consumer:29193/management``); otherwise the URL is built from
        extra ``scheme`` (default ``http``), ``host``, ``port`` and ``schema`` (the path).

        :raises ValueError: the connection has no host, an ``api_version`` not in
            :data:`~.jsonld.API_VERSIONS` or one its ``connector_version`` does not serve, or a
            ``connector_version`` that cannot be parsed.
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
        if api_version not in jsonld.API_VERSIONS:
            raise ValueError(
                f"Connection {conn.conn_id!r}: api_version {api_version!r} is not supported "
                f"(use one of {', '.join(jsonld.API_VERSIONS)})"
            )
        connector_version = str(extra.get("connector_version") or "").strip() or None
        protocol = jsonld.DEFAULT_PROTOCOL
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


def _error_messages(response: httpx.Response) -> list[str]:
    """The ``ApiErrorDetail`` messages of an error answer (``type: message``), or its text."""
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


def _is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """The one retry policy: a connect error always (nothing reached the connector); for idempotent calls
    also other transport errors (timeouts) and 429/500/502/503/504."""
    if isinstance(exc, httpx.ConnectError):
        return True
    if not idempotent:
        return False
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, EdcApiError) and exc.status_code in _RETRY_STATUS


def _check(response: httpx.Response) -> Any:
    """The JSON body of a 2xx answer (``None`` when empty).

    :raises EdcApiError: an error status, or a 2xx body that is not JSON.
    """
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
        response.status_code, response.request.method, str(response.request.url), _error_messages(response)
    )


class EdcHookBase(BaseHook):
    """Connection, transport and retry of :class:`~airflow_edc_callbacks.hooks.edc.EdcManagementHook`.

    :param edc_conn_id: Airflow connection of type ``edc`` (default ``edc_default``).
    :param timeout: seconds per HTTP request.
    :param retries: extra attempts after the first.
    :param retry_wait: first backoff in seconds (doubles, at most 10 s).
    :param transport: an httpx transport for the sync client (proxies, tests); default httpx's.
    :param async_transport: the same for the async client (triggers).
    :param ledger: the callback store's side of the hook (see :class:`~.ledger.CallbackLedger`):
        binding of started processes, EDR refresh locks, EDRs from stored callbacks. Without it none
        of these happen (the waiting trigger still binds; an EDR comes from the connector only).
    """

    def __init__(
        self,
        edc_conn_id: str = DEFAULT_CONN_ID,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        retry_wait: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        ledger: CallbackLedger | None = None,
    ) -> None:
        super().__init__()
        self.transport = transport
        self.async_transport = async_transport
        self.edc_conn_id = edc_conn_id
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.ledger = ledger
        self._settings: EdcConnectionSettings | None = None

    # -- connection ------------------------------------------------------------------------------
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

    @property
    def is_v4(self) -> bool:
        """Whether the connection selects Management API v4 (``v4`` or ``v4beta``)."""
        return jsonld.is_v4(self.settings.api_version)

    def api_path(self, resource: str) -> str:
        """The request path of ``resource`` (e.g. ``transferprocesses/x``) in the connection's API version."""
        return jsonld.api_path(self.settings.api_version, resource)

    async def _aapi_path(self, resource: str) -> str:
        return jsonld.api_path((await self.aget_settings()).api_version, resource)

    def jsonld_context(self) -> Any:
        """The ``@context`` of request bodies: ``{"@vocab": EDC}`` for v3, ``[management/v2]`` for v4."""
        return jsonld.jsonld_context(self.settings.api_version)

    # -- transport -------------------------------------------------------------------------------
    def _headers(self, settings: EdcConnectionSettings) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if settings.api_key:
            headers["X-Api-Key"] = settings.api_key
        return headers

    def _retrying(self, idempotent: bool) -> dict[str, Any]:
        return {
            "retry": tenacity.retry_if_exception(lambda exc: _is_retryable(exc, idempotent=idempotent)),
            "stop": tenacity.stop_after_attempt(self.retries + 1),
            "wait": tenacity.wait_exponential(multiplier=self.retry_wait, max=10),
            "reraise": True,
        }

    def _unreachable(
        self, settings: EdcConnectionSettings, method: str, path: str, err: Exception
    ) -> EdcTransportError:
        return EdcTransportError(
            f"Cannot reach the EDC Management API at {settings.base_url} ({method} {path}): {err!r}"
        )

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        """One request with the retry policy; the JSON answer.

        :raises EdcApiError: the connector answered an error status.
        :raises EdcTransportError: the connector could not be reached.
        """
        settings = self.settings
        headers = self._headers(settings)
        try:
            with httpx.Client(base_url=settings.base_url, timeout=self.timeout, transport=self.transport) as client:
                retrying = tenacity.Retrying(**self._retrying(method == "GET"))
                return retrying(lambda: _check(client.request(method, path, json=body, headers=headers)))
        except httpx.TransportError as err:
            raise self._unreachable(settings, method, path, err) from err

    async def _asend(self, method: str, path: str, body: Any = None) -> Any:
        """Async :meth:`_send`."""
        settings = await self.aget_settings()
        headers = self._headers(settings)
        try:
            async with httpx.AsyncClient(
                base_url=settings.base_url, timeout=self.timeout, transport=self.async_transport
            ) as client:

                async def once() -> Any:
                    return _check(await client.request(method, path, json=body, headers=headers))

                return await tenacity.AsyncRetrying(**self._retrying(method == "GET"))(once)
        except httpx.TransportError as err:
            raise self._unreachable(settings, method, path, err) from err

    # -- starting processes ----------------------------------------------------------------------
    def _start(self, resource: str, request: Mapping[str, Any]) -> str:
        """``POST`` ``request`` to ``resource``; the new process's ``@id``, bound (see :meth:`_bind_callbacks`).

        :raises EdcApiError: the connector rejected it, or answered no ``@id``.
        :raises ProcessBoundElsewhereError: the new id is bound to another task instance already.
        """
        path = self.api_path(resource)
        response = self._send("POST", path, dict(request))
        process_id = jsonld_get(response or {}, "@id")
        if not process_id:
            raise EdcApiError(200, "POST", f"{self.settings.base_url}{path}", ["no @id in IdResponse"])
        self._bind_callbacks(str(process_id), request)
        return str(process_id)

    def _bind_callbacks(self, process_id: str, request: Mapping[str, Any]) -> None:
        """Bind the process, through the ledger, to the correlation id of each dynamic callback address
        of this deployment in ``request``; a ledger that cannot be written is logged (the trigger binds
        again when it starts)."""
        if self.ledger is None:
            return
        for address in as_list(jsonld_get(request, "callbackAddresses")):
            uri = jsonld_get(address, "uri") if isinstance(address, Mapping) else None
            correlation_id = correlation_id_of_callback_url(str(uri)) if uri else None
            if correlation_id is None:
                continue
            try:
                bound = self.ledger.bind(process_id, correlation_id)
            except StoreUnavailableError as err:
                self.log.warning("Could not bind %s to its task instance now (its trigger will): %s", process_id, err)
                continue
            if bound != correlation_id:
                raise ProcessBoundElsewhereError(process_id, bound, correlation_id)

    def test_connection(self) -> tuple[bool, str]:
        """Query one transfer process to check the URL and API key (the UI's Test button)."""
        try:
            body = jsonld.query_spec(self.settings.api_version, limit=1)
            self._send("POST", self.api_path("transferprocesses/request"), body)
        except Exception as err:
            return False, str(err)
        return True, f"Management API at {self.settings.base_url} answered"
