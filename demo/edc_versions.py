"""The EDC versions the demo can assemble, and the Maven project that assembles each one.

One row of :data:`VERSIONS` per Eclipse Dataspace Components version: the ``org.eclipse.edc`` artifacts of
its runtime (the base BOMs where Maven Central serves them, else an explicit module list), artifacts pinned
to another version, exclusions, the settings that differ by version and the features the runtime offers.
:func:`runtime_pom` renders the Maven project of one row (``demo/connectors.py`` builds it into
``demo/edc/target/<version>/lib``); the project's extensions (``demo/edc/public-api``, ``demo/edc/seed-vault``)
are compiled against the same version (``mvn -Dedc.version=<version>``).

What resolves here (Maven Central as this project's machines reach it; checked with ``mvn dependency:get``):

- 0.15.1, 0.14.0, 0.13.0: ``controlplane-base-bom`` and ``dataplane-base-bom`` with ``iam-mock``
  (0.14.0 and 0.13.0 without ``data-plane-selector-client``, see :data:`_SELECTOR_CLIENT`).
- 0.14.1, 0.13.2: not listed: ``data-plane-selector-client`` (both) and ``iam-mock`` (0.14.1) are not served
  (0.13.2 without the selector client, as 0.13.0 runs, was not tried).
- 0.12.0: ``dataplane-base-bom`` and ``data-plane-selector-client`` are not served: explicit module list
  without the selector client (an embedded data plane registers with the local selector of
  ``data-plane-selector-core``).

All four listed runtimes boot and pass every compatibility feature (``tests/compat``, with the version API of
0.12-0.14 moved off its default port 7171 by ``demo/edc/<side>.properties``).

- 0.11.1: not listed. No base BOM is served (``Could not find artifact
  org.eclipse.edc:controlplane-base-bom:jar:0.11.1``), and with the explicit modules of its BOMs
  ``version-api`` is not served either (``Could not find artifact org.eclipse.edc:version-api:jar:0.11.1``);
  without it the rest resolves, but such a runtime was never started here.
- 0.16 and later: not served at all.

Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

__all__ = [
    "DEFAULT_VERSION",
    "FEATURES",
    "VERSIONS",
    "EdcVersion",
    "get",
    "runtime_pom",
]

DEFAULT_VERSION = "0.15.1"
"""The version the demo and the whole end-to-end suite run by default."""

FEATURES: dict[str, str] = {
    "negotiation": "contract negotiation started and awaited through the product (hook / operator)",
    "push": "HttpData-PUSH transfer started by the operator, resumed by its dynamic callback",
    "pull": "HttpData-PULL transfer whose data is fetched through the EDR (hook.fetch_data)",
    "static_callback": "the connector's static callback (settings from `airflow-edc-callbacks static-config`)",
    "sensor": "EdcTransferSensor waiting for a transfer started elsewhere",
    "edr_cache_api": "the consumer's EDR cache management API (/v3/edrs)",
}
"""Feature ids (keys of the compatibility results) and what each covers."""

_JETTY_WS = "org.eclipse.jetty.websocket:jetty-websocket"
"""EDC's POMs ask for this pom-packaged Jetty aggregator as a jar: unresolvable, and no websocket is used."""
_EDR_CACHE_API = "org.eclipse.edc:edr-cache-api"
_SELECTOR_CLIENT = "org.eclipse.edc:data-plane-selector-client"
"""Up to 0.14 its extension requires ``edc.dpf.selector.url`` (a remote selector; ``required=false`` from
0.15): these runtimes embed their data plane, which registers with the local selector of
``data-plane-selector-core`` without it (boot error otherwise: ``DataPlaneSelectorClientExtension is
missing --> Configuration value "selectorApiUrl" ... (property 'edc.dpf.selector.url')``)."""

# explicit module lists (artifact ids of org.eclipse.edc), taken from the base BOMs of the EDC source at
# that tag (dist/bom/*/build.gradle.kts) minus what Maven Central does not serve
_CONTROL_PLANE_0_12 = [
    "boot",
    "connector-core",
    "edr-store-core",
    "token-core",
    "control-plane-core",
    "data-plane-selector-core",
    "policy-monitor-core",
    "dsp",
    "configuration-filesystem",
    "auth-tokenbased",
    "auth-configuration",
    "auth-delegated",
    "api-core",
    "api-observability",
    "control-api-configuration",
    "version-api",
    "http",
    "control-plane-api",
    "management-api",
    "transfer-data-plane-signaling",
    "data-plane-selector-api",
    "data-plane-selector-control-api",
    "data-plane-signaling-client",
    "callback-event-dispatcher",
    "callback-http-dispatcher",
    "callback-static-endpoint",
    "edr-store-receiver",
    "transform-lib",
    "edr-cache-api",
]
_DATA_PLANE_0_12 = [
    "data-plane-core",
    "json-ld",
    "control-plane-api-client",
    "data-plane-self-registration",
    "data-plane-http",
    "data-plane-signaling-api",
    "data-plane-iam",
]


@dataclass(frozen=True)
class EdcVersion:
    """One assemblable EDC version.

    :ivar version: the EDC release, e.g. ``0.15.1``.
    :ivar modules: ``org.eclipse.edc`` artifact ids taken at ``version`` (BOMs or modules).
    :ivar pinned: ``(artifact id, version)`` taken at another version, without their dependencies
        (e.g. ``edr-cache-api`` 0.14.0 on 0.15.1, whose own jar was never published).
    :ivar exclusions: ``group:artifact`` excluded from every module.
    :ivar settings: connector properties this version needs on top of ``demo/edc/<side>.properties``.
    :ivar dsp_protocol: the DSP protocol id both connectors speak (``protocol`` of Management API requests).
    :ivar dsp_path: the path under ``web.http.protocol.path`` where that DSP version is served.
    :ivar features: the :data:`FEATURES` this runtime offers (the rest are "not offered").
    :ivar resolution: how its artifacts were found (documentation).
    """

    version: str
    modules: tuple[str, ...]
    pinned: tuple[tuple[str, str], ...] = ()
    exclusions: tuple[str, ...] = (_JETTY_WS,)
    settings: dict[str, str] = field(default_factory=dict)
    dsp_protocol: str = "dataspace-protocol-http:2025-1"
    dsp_path: str = "/2025-1"
    features: frozenset[str] = frozenset(FEATURES)
    resolution: str = ""


_BOMS = ("controlplane-base-bom", "dataplane-base-bom", "iam-mock")

VERSIONS: dict[str, EdcVersion] = {
    v.version: v
    for v in (
        EdcVersion(
            "0.15.1",
            _BOMS,
            pinned=(("edr-cache-api", "0.14.0"),),
            exclusions=(_JETTY_WS, _EDR_CACHE_API),
            resolution="base BOMs; edr-cache-api 0.15.1 is named by the BOM but not served: the 0.14.0 jar",
        ),
        EdcVersion(
            "0.14.0",
            _BOMS,
            pinned=(("edr-cache-api", "0.14.0"),),
            exclusions=(_JETTY_WS, _EDR_CACHE_API, _SELECTOR_CLIENT),
            resolution="base BOMs without data-plane-selector-client (embedded data plane)",
        ),
        EdcVersion(
            "0.13.0",
            _BOMS,
            pinned=(("edr-cache-api", "0.13.0"),),
            exclusions=(_JETTY_WS, _EDR_CACHE_API, _SELECTOR_CLIENT),
            dsp_protocol="dataspace-protocol-http:2024/1",
            dsp_path="/2024/1",
            resolution="base BOMs without data-plane-selector-client (embedded data plane); DSP 2025-1 arrived "
            "in 0.14.0 (0.13.0 serves 0.8 and 2024/1)",
        ),
        EdcVersion(
            "0.12.0",
            (*_CONTROL_PLANE_0_12, *_DATA_PLANE_0_12, "iam-mock"),
            dsp_protocol="dataspace-protocol-http:2024/1",
            dsp_path="/2024/1",
            resolution="explicit modules: dataplane-base-bom and data-plane-selector-client are not served",
        ),
    )
}
"""The listed versions, newest first."""


def get(version: str) -> EdcVersion:
    """The row of ``version``.

    :raises KeyError: the version is not listed (the message names the listed ones).
    """
    try:
        return VERSIONS[version]
    except KeyError:
        raise KeyError(f"EDC {version} is not listed in demo/edc_versions.py (listed: {', '.join(VERSIONS)})") from None


def _dependency(artifact: str, version: str, exclusions: tuple[str, ...]) -> str:
    excl = "".join(
        f"<exclusion><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId></exclusion>"
        for g, a in (e.split(":", 1) for e in exclusions)
    )
    return (
        f"    <dependency><groupId>org.eclipse.edc</groupId><artifactId>{escape(artifact)}</artifactId>"
        f"<version>{escape(version)}</version><exclusions>{excl}</exclusions></dependency>\n"
    )


def runtime_pom(row: EdcVersion) -> str:
    """The Maven project (``pom.xml`` text) whose runtime dependencies are the runtime of ``row``.

    Build it with ``mvn -f <that pom> dependency:copy-dependencies -DincludeScope=runtime
    -DoutputDirectory=<lib>``; nothing is compiled.
    """
    deps = "".join(_dependency(m, row.version, row.exclusions) for m in row.modules)
    deps += "".join(_dependency(a, v, ("*:*",)) for a, v in row.pinned)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!-- generated by demo/edc_versions.py for EDC {escape(row.version)}: {escape(row.resolution)} -->\n"
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>airflow-edc-callbacks.demo</groupId>\n"
        f"  <artifactId>edc-demo-runtime-{escape(row.version)}</artifactId>\n"
        "  <version>0.0.0</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n"
        f"{deps}"
        "  </dependencies>\n"
        "</project>\n"
    )
