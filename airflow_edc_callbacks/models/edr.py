"""Endpoint data references (EDRs) of PULL transfers in the three key shapes connectors send."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_edc_callbacks.models.jsonld import EDC_NAMESPACE, TRACTUSX_AUTH_NAMESPACE, expand_keys


def _int_seconds(value: Any) -> int | None:
    """``expiresIn`` as an int: the wire carries a string such as ``"300"``; unreadable (also ``NaN``, or
    beyond a double's range: ``"1e999"``) is ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class EndpointDataReference:
    """The EDR of a started PULL transfer: where to fetch the data and the token to show.

    EDC facts: the provider's data plane creates it as a ``DataAddress`` of type
    ``https://w3id.org/idsa/v4.1/HTTP`` with ``endpoint``, ``authType`` (``bearer``), ``authorization``
    (the token, sent as the ``Authorization`` header as is) and ``endpointType``
    (``DataPlaneAuthorizationServiceImpl``); the consumer gets it with ``TransferProcessStarted``
    (``dataAddress``) and serves it at ``GET /v3/edrs/{id}/dataaddress`` (``EdrCacheApiV3Controller``).
    Tractus-X EDC adds refresh data in :data:`TRACTUSX_AUTH_NAMESPACE` (``refreshToken``,
    ``refreshEndpoint``, ``expiresIn`` as a string of seconds, ``audience``).

    The tokens never show in ``repr`` or ``str``.

    :ivar transfer_process_id: the consumer's transfer process id.
    :ivar endpoint: the provider's public endpoint URL.
    :ivar authorization: the access token.
    :ivar auth_type: ``bearer`` for EDC's data plane.
    :ivar endpoint_type: e.g. ``https://w3id.org/idsa/v4.1/HTTP``.
    :ivar source: where it came from: ``connector`` (the EDR cache) or ``callback`` (the stored event).
    :ivar refresh_token: Tractus-X: the token to present when refreshing, or ``None``.
    :ivar refresh_endpoint: Tractus-X: the provider's refresh URL, or ``None``.
    :ivar expires_in: Tractus-X: the access token's lifetime in seconds, or ``None``.
    :ivar audience: Tractus-X: the audience of the refresh request (the consumer's DID), or ``None``.
    :ivar read_at: when this EDR was read, epoch seconds (see :meth:`expired`).
    """

    transfer_process_id: str
    endpoint: str
    authorization: str | None = field(repr=False)
    auth_type: str | None = None
    endpoint_type: str | None = None
    source: str = "connector"
    refresh_token: str | None = field(default=None, repr=False)
    refresh_endpoint: str | None = None
    expires_in: int | None = None
    audience: str | None = None
    read_at: int = field(default_factory=lambda: int(time.time()), compare=False)

    @classmethod
    def from_data_address(
        cls, transfer_process_id: str, data_address: Mapping[str, Any], source: str = "connector"
    ) -> EndpointDataReference:
        """Read an EDR ``DataAddress`` in any of its key shapes.

        Shapes: full IRIs (the ``TransferProcessStarted`` callback, inside ``properties``); prefixed keys
        resolved with the document's ``@context`` (the older Tractus-X EDR API: ``tx-auth:refreshToken``
        with ``"tx-auth": "https://w3id.org/tractusx/auth/"``); bare EDC keys next to full Tractus-X IRIs
        (Tractus-X EDC 0.11 / 0.12); ``edc:``-prefixed and expanded (``[{"@value": ...}]``) forms. Keys
        of ``properties`` are read with the same context; keys of the address itself win.

        :raises ValueError: it has no ``endpoint``.
        """
        context = data_address.get("@context")
        address = expand_keys(data_address, context)
        properties = address.get(f"{EDC_NAMESPACE}properties")
        merged = {**(expand_keys(properties, context) if isinstance(properties, Mapping) else {}), **address}

        def edc(name: str) -> Any:
            return merged.get(f"{EDC_NAMESPACE}{name}")

        def tx(name: str) -> Any:
            value = merged.get(f"{TRACTUSX_AUTH_NAMESPACE}{name}")
            return str(value) if value not in (None, "") else None

        endpoint = edc("endpoint")
        if not endpoint:
            raise ValueError(f"the data address of transfer process {transfer_process_id} has no endpoint")
        authorization = edc("authorization")
        return cls(
            transfer_process_id=transfer_process_id,
            endpoint=str(endpoint),
            authorization=str(authorization) if authorization else None,
            auth_type=edc("authType"),
            endpoint_type=edc("endpointType") or edc("type"),
            source=source,
            refresh_token=tx("refreshToken"),
            refresh_endpoint=tx("refreshEndpoint"),
            expires_in=_int_seconds(merged.get(f"{TRACTUSX_AUTH_NAMESPACE}expiresIn")),
            audience=tx("audience"),
        )

    @property
    def expires_at(self) -> int | None:
        """Epoch seconds at which the token has expired at the latest: ``read_at + expires_in`` (the
        connector's cache may have held it for a while already), ``None`` without ``expires_in``."""
        return None if self.expires_in is None else self.read_at + self.expires_in

    def expired(self, now: float | None = None, leeway: float = 0.0) -> bool:
        """Whether the token has expired by ``now`` (epoch seconds, default the current time), ``leeway``
        seconds early; always ``False`` without ``expires_in`` (EDC core's tokens carry none)."""
        expires_at = self.expires_at
        return expires_at is not None and (time.time() if now is None else now) + leeway >= expires_at

    def secrets(self) -> list[str]:
        """The tokens it holds (for the secrets masker)."""
        return [s for s in (self.authorization, self.refresh_token) if s]

    def headers(self) -> dict[str, str]:
        """The request headers the provider's public API expects: ``Authorization: <token>``."""
        return {"Authorization": self.authorization} if self.authorization else {}
