"""What differs between EDC connector versions, as far as this provider talks to them (no Airflow imports).

A connection of type ``edc`` may name its connector's version (extra ``connector_version``, e.g.
``0.13.0``); the hook then speaks that version's DSP protocol id unless the connection's extra
``protocol`` says otherwise, and ``airflow-edc-callbacks static-config --connector-version`` renders that
version's static callback settings.

EDC facts (Eclipse Dataspace Components connector source at each tag):

- DSP: ``DspVersions`` / ``DspConstants``. 0.14.0 and later ship DSP 2025-1 (``dsp-2025``): protocol id
  ``dataspace-protocol-http:2025-1``, served under ``<protocol path>/2025-1``. 0.12.0 and 0.13.0 ship
  DSP 0.8 (``dataspace-protocol-http``, at the protocol path itself) and 2024/1
  (``dataspace-protocol-http:2024/1``, under ``/2024/1``); their newest is 2024/1.
- Management API: v3 in every version; ``/v4beta`` from 0.14 to 0.16, ``/v4`` from 0.17.
- Static callbacks (``CallbackStaticEndpointExtension``): ``edc.callback.<name>.auth-key`` /
  ``.auth-code-id`` up to 0.16, ``.auth.key`` / ``.auth.codeid`` from 0.17.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def parse_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of an EDC version such as ``0.13.0`` or ``0.18.0-SNAPSHOT``.

    :raises ValueError: the text does not start with ``<major>.<minor>``.
    """
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"Not a connector version: {version!r} (use e.g. 0.13.0 or 0.18.0)")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class ConnectorProfile:
    """The version-dependent facts of one EDC connector version.

    :ivar dsp_protocol: the newest DSP protocol id it speaks (``protocol`` of catalog, contract and
        transfer requests), e.g. ``dataspace-protocol-http:2025-1``.
    :ivar dsp_path: where that DSP version is served under the connector's protocol path, e.g.
        ``/2025-1`` (append it to ``web.http.protocol`` to get a counter-party address).
    :ivar management_api_versions: the Management API path versions it serves, e.g. ``("v3", "v4beta")``.
    :ivar static_auth_key: the setting suffix of a static callback's header name (``auth-key``).
    :ivar static_auth_code_id: the setting suffix of its vault alias (``auth-code-id``).
    """

    dsp_protocol: str
    dsp_path: str
    management_api_versions: tuple[str, ...]
    static_auth_key: str
    static_auth_code_id: str

    def dsp_address(self, protocol_base_url: str) -> str:
        """The counter-party address of a connector whose DSP base URL (``web.http.protocol``) is given."""
        return protocol_base_url.rstrip("/") + self.dsp_path


OLDEST_KNOWN = (0, 11)
"""The oldest EDC line whose facts above were read from its source (the compatibility suite runs 0.12 on)."""


def profile(version: str) -> ConnectorProfile:
    """The :class:`ConnectorProfile` of EDC ``version`` (0.11 and later; see the module docstring).

    :raises ValueError: the version cannot be parsed, or is older than :data:`OLDEST_KNOWN` (leave
        ``connector_version`` unset for such a connector and give ``protocol`` in the connection's extra).
    """
    v = parse_version(version)
    if v < OLDEST_KNOWN:
        raise ValueError(
            f"connector_version {version}: this provider knows EDC 0.11 and later; for an older connector leave "
            "connector_version unset and give the DSP protocol id as the connection's 'protocol' extra"
        )
    if v >= (0, 14):
        dsp = ("dataspace-protocol-http:2025-1", "/2025-1")
    else:
        dsp = ("dataspace-protocol-http:2024/1", "/2024/1")
    if v >= (0, 17):
        apis: tuple[str, ...] = ("v3", "v4")
    elif v >= (0, 14):
        apis = ("v3", "v4beta")
    else:
        apis = ("v3",)
    auth = ("auth.key", "auth.codeid") if v >= (0, 17) else ("auth-key", "auth-code-id")
    return ConnectorProfile(dsp[0], dsp[1], apis, auth[0], auth[1])
