"""Two real Eclipse Dataspace Components (EDC) connectors on one machine, for the demo and the tests.

The runtime is assembled by Maven from published ``org.eclipse.edc`` artifacts into
``demo/edc/target/<version>/lib``, for any EDC version listed in ``demo/edc_versions.py`` (default 0.15.1:
the newest version the reachable Maven Central serves; ``demo/edc/pom.xml`` is that runtime as one Maven
project, for the Docker image). The provider and the consumer are two JVMs on that one classpath,
configured by ``demo/edc/provider.properties`` and ``demo/edc/consumer.properties`` (ports 191xx and
291xx) plus the version's own settings.

Typical use::

    from demo import connectors
    connectors.build()
    with connectors.start(workdir, data_server_url) as c:      # reuses running connectors if healthy
        agreement = connectors.negotiate(c, "demo-asset")
        tp_id = connectors.start_push_transfer(c, agreement, sink_url, callback_uri)

CLI::

    python -m demo.connectors build [--edc-version 0.13.0]
    python -m demo.connectors up --workdir D --data-server-url U [--edc-version 0.13.0]

Standard library + httpx only. Talks only to 127.0.0.1/localhost.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from demo import edc_versions
from demo.edc_versions import DEFAULT_VERSION

__all__ = [
    "CONSUMER",
    "DEFAULT_VERSION",
    "DSP_PROTOCOL",
    "EDC_DIR",
    "EDC_NS",
    "LIB_DIR",
    "MAIN_CLASS",
    "PROVIDER",
    "BuildError",
    "ConnectorError",
    "ConnectorSide",
    "Connectors",
    "build",
    "lib_dir",
    "main",
    "negotiate",
    "negotiate_once",
    "seed_provider",
    "start",
    "start_push_transfer",
    "wait_transfer_state",
]

EDC_DIR: Path = Path(__file__).resolve().parent / "edc"
"""Directory with ``pom.xml`` and the two properties files."""


def lib_dir(version: str = DEFAULT_VERSION) -> Path:
    """Where :func:`build` puts the runtime jars of EDC ``version``: ``demo/edc/target/<version>/lib``."""
    return EDC_DIR / "target" / version / "lib"


LIB_DIR: Path = lib_dir()
"""Where :func:`build` puts the runtime jars of the default version (gitignored)."""

EDC_NS = "https://w3id.org/edc/v0.0.1/ns/"
ODRL_NS = "http://www.w3.org/ns/odrl/2/"
DSP_PROTOCOL = edc_versions.get(DEFAULT_VERSION).dsp_protocol
"""The DSP protocol id of the default version (others: ``edc_versions.get(v).dsp_protocol``)."""
DSP_PATH_SUFFIX = edc_versions.get(DEFAULT_VERSION).dsp_path
MAIN_CLASS = "org.eclipse.edc.boot.system.runtime.BaseRuntime"
DEFAULT_JVM_OPTS: tuple[str, ...] = ("-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

DEMO_ASSET = "demo-asset"
BROKEN_ASSET = "broken-asset"
POLICY_ID = "allow-all"
CONTRACT_DEFINITION_ID = "all-assets"


class ConnectorError(RuntimeError):
    """A connector could not be built, started, seeded or driven."""


class BuildError(ConnectorError):
    """Maven failed; the message carries the tail of the build log."""


def _read_properties(path: Path) -> dict[str, str]:
    """Parse a simple Java ``.properties`` file (``key=value`` lines, ``#`` comments)."""
    props: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


@dataclass(frozen=True)
class ConnectorSide:
    """Static facts about one connector, read from its properties file."""

    name: str
    properties_file: Path
    participant_id: str
    api_key: str
    default_port: int
    default_path: str
    management_port: int
    management_path: str
    protocol_port: int
    protocol_path: str
    control_port: int
    public_port: int
    public_path: str

    @classmethod
    def from_properties(cls, name: str, path: Path) -> ConnectorSide:
        """Build a side description from ``demo/edc/<name>.properties``."""
        p = _read_properties(path)
        return cls(
            name=name,
            properties_file=path,
            participant_id=p["edc.participant.id"],
            api_key=p["web.http.management.auth.key"],
            default_port=int(p["web.http.port"]),
            default_path=p["web.http.path"],
            management_port=int(p["web.http.management.port"]),
            management_path=p["web.http.management.path"],
            protocol_port=int(p["web.http.protocol.port"]),
            protocol_path=p["web.http.protocol.path"],
            control_port=int(p["web.http.control.port"]),
            public_port=int(p["web.http.public.port"]),
            public_path=p["web.http.public.path"],
        )

    @property
    def health_url(self) -> str:
        """Readiness endpoint (``GET``, no auth): ``http://127.0.0.1:<port>/api/check/health``."""
        return f"http://127.0.0.1:{self.default_port}{self.default_path}/check/health"

    @property
    def management_url(self) -> str:
        """Management API base, e.g. ``http://127.0.0.1:29193/management`` (append ``/v3/...``)."""
        return f"http://127.0.0.1:{self.management_port}{self.management_path}"

    @property
    def dsp_address(self) -> str:
        """DSP address of this connector (default version), as a counterparty uses it."""
        return self.dsp_address_of(DEFAULT_VERSION)

    def dsp_address_of(self, version: str) -> str:
        """DSP address of this connector running EDC ``version``, e.g. ``.../protocol/2025-1``."""
        return f"http://localhost:{self.protocol_port}{self.protocol_path}{edc_versions.get(version).dsp_path}"


PROVIDER = ConnectorSide.from_properties("provider", EDC_DIR / "provider.properties")
CONSUMER = ConnectorSide.from_properties("consumer", EDC_DIR / "consumer.properties")


@dataclass
class Connectors:
    """Handle on the running provider + consumer pair (the result of :func:`start`).

    ``owned`` is True when this handle started the JVMs (then :meth:`stop` kills their process groups);
    False when already running connectors were reused (then :meth:`stop` leaves them alone).
    """

    provider_management_url: str
    consumer_management_url: str
    provider_api_key: str
    consumer_api_key: str
    provider_dsp_address: str
    provider_id: str
    consumer_id: str
    provider_health_url: str
    consumer_health_url: str
    data_server_url: str
    workdir: Path
    owned: bool = False
    edc_version: str = DEFAULT_VERSION
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def client(self, side: str, timeout: float = 30.0) -> httpx.Client:
        """An ``httpx.Client`` for the ``"provider"`` or ``"consumer"`` Management API (key set)."""
        if side == "provider":
            return httpx.Client(
                base_url=self.provider_management_url, timeout=timeout, headers={"X-Api-Key": self.provider_api_key}
            )
        if side == "consumer":
            return httpx.Client(
                base_url=self.consumer_management_url, timeout=timeout, headers={"X-Api-Key": self.consumer_api_key}
            )
        raise ValueError(f"unknown side {side!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no process objects)."""
        return {
            "provider_management_url": self.provider_management_url,
            "consumer_management_url": self.consumer_management_url,
            "provider_api_key": self.provider_api_key,
            "consumer_api_key": self.consumer_api_key,
            "provider_dsp_address": self.provider_dsp_address,
            "provider_id": self.provider_id,
            "consumer_id": self.consumer_id,
            "provider_health_url": self.provider_health_url,
            "consumer_health_url": self.consumer_health_url,
            "data_server_url": self.data_server_url,
            "workdir": str(self.workdir),
            "owned": self.owned,
            "edc_version": self.edc_version,
            "protocol": self.dsp_protocol,
        }

    @property
    def dsp_protocol(self) -> str:
        """The DSP protocol id of the running version (the ``protocol`` of catalog, contract and transfer requests)."""
        return edc_versions.get(self.edc_version).dsp_protocol

    def stop(self, timeout: float = 15.0) -> None:
        """Kill the JVMs' process groups (TERM to all, then KILL what is left after ``timeout``), if this
        handle owns them. Both JVMs shut down at the same time."""
        procs = list(self.processes.values())
        for proc in procs:
            _terminate_group(proc)
        for proc in procs:
            _kill_group(proc, timeout)
        self.processes.clear()

    def __enter__(self) -> Connectors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate_group(proc: subprocess.Popen[bytes]) -> bool:
    """Send TERM to ``proc``'s process group; False when it is gone already."""
    if proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _kill_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if not _terminate_group(proc):
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<no log: {exc}>"


EXTENSION_DIRS: tuple[Path, ...] = (EDC_DIR / "seed-vault", EDC_DIR / "public-api")
"""Small EDC extensions (Java, built here into the runtime classpath): ``seed-vault`` stores
``edc.demo.vault.secrets.<alias>`` in the vault; ``public-api`` is the provider data plane's public API
that serves PULL transfers (EDC ships none since 0.14)."""


def _inputs_hash(row: edc_versions.EdcVersion, pom: str) -> str:
    digest = hashlib.sha256(pom.encode())
    # not repr(row): a frozenset's order changes with each process's string hash seed
    digest.update(json.dumps(asdict(row), sort_keys=True, default=sorted).encode())
    for directory in EXTENSION_DIRS:
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and "target" not in p.parts):
            digest.update(str(path.relative_to(EDC_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def build(force: bool = False, version: str = DEFAULT_VERSION) -> Path:
    """Assemble the runtime classpath of EDC ``version`` with Maven and return its lib directory.

    The row of ``version`` in :mod:`demo.edc_versions` is rendered into ``target/<version>/pom.xml``;
    ``mvn -B dependency:copy-dependencies`` copies its runtime jars and the two extensions are compiled
    against the same version (``mvn -Dedc.version=<version> package``, each into ``target/<version>/ext``).
    Maven runs only when ``target/<version>/lib`` is missing or the inputs (the rendered pom, the row,
    the extensions' sources; sha256 marker) changed since its last successful build, or when ``force``
    is set; Maven's own cache (``~/.m2``) is shared by all versions. Maven's output goes to
    ``target/<version>/maven-build.log``. The Maven executable can be overridden with ``$EDC_DEMO_MVN``.

    :raises KeyError: ``version`` is not listed.
    :raises BuildError: Maven failed (the message carries the log tail).
    """
    row = edc_versions.get(version)
    target = EDC_DIR / "target" / version
    lib = lib_dir(version)
    marker = target / "lib.inputs.sha256"
    pom_text = edc_versions.runtime_pom(row)
    digest = _inputs_hash(row, pom_text)
    if not force and lib.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
        return lib
    mvn = os.environ.get("EDC_DEMO_MVN") or shutil.which("mvn")
    if not mvn:
        raise BuildError("Maven (mvn) not found on PATH; install it (e.g. apt-get install maven)")
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    pom.write_text(pom_text, encoding="utf-8")
    build_log = target / "maven-build.log"
    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    ext_dirs = {d: target / "ext" / d.name for d in EXTENSION_DIRS}
    extensions = [
        [mvn, "-B", "-f", str(d / "pom.xml"), f"-Dedc.version={version}", f"-Dext.build.dir={out}", "package"]
        for d, out in ext_dirs.items()
    ]
    with build_log.open("wb") as log:
        rc = 0
        for step in (cmd, *extensions):
            log.write((" ".join(step) + "\n").encode())
            log.flush()
            rc = rc or subprocess.call(step, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    jars = [out / f"demo-{d.name}.jar" for d, out in ext_dirs.items()]
    if rc != 0 or not any(staging.glob("*.jar")) or not all(j.is_file() for j in jars):
        raise BuildError(f"Maven build of EDC {version} failed (exit {rc}); log {build_log}:\n{_tail(build_log)}")
    for jar in jars:
        shutil.copy2(jar, staging / jar.name)
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    marker.write_text(digest + "\n")
    return lib


def _health(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """``(healthy, what the endpoint said)``; the text goes into start-up errors."""
    try:
        r = httpx.get(url, timeout=timeout)
        healthy = r.status_code == 200 and bool(r.json().get("isSystemHealthy"))
        return healthy, f"HTTP {r.status_code} {r.text[:500]}"
    except (httpx.HTTPError, ValueError) as err:
        return False, repr(err)


def _healthy(url: str, timeout: float = 2.0) -> bool:
    return _health(url, timeout)[0]


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(
    side: ConnectorSide,
    lib_dir: Path,
    workdir: Path,
    jvm_opts: tuple[str, ...],
    properties: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=os.path.join(java_home, "bin")) if java_home else None
    java = java or shutil.which("java")
    if not java:
        raise ConnectorError("java not found (need Java 17+)")
    extra = [f"-D{key}={value}" for key, value in (properties or {}).items()]
    cmd = [java, *jvm_opts, *extra, f"-Dedc.fs.config={side.properties_file}", "-cp", f"{lib_dir}/*", MAIN_CLASS]
    log = (workdir / f"{side.name}.log").open("ab")
    try:
        log.write(_START_MARK)
        log.flush()
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir, start_new_session=True
        )
    finally:
        log.close()


def _handle(
    workdir: Path,
    data_server_url: str,
    owned: bool,
    processes: dict[str, subprocess.Popen[bytes]] | None = None,
    version: str = DEFAULT_VERSION,
) -> Connectors:
    return Connectors(
        provider_management_url=PROVIDER.management_url,
        consumer_management_url=CONSUMER.management_url,
        provider_api_key=PROVIDER.api_key,
        consumer_api_key=CONSUMER.api_key,
        provider_dsp_address=PROVIDER.dsp_address_of(version),
        provider_id=PROVIDER.participant_id,
        consumer_id=CONSUMER.participant_id,
        provider_health_url=PROVIDER.health_url,
        consumer_health_url=CONSUMER.health_url,
        data_server_url=data_server_url.rstrip("/"),
        workdir=workdir,
        owned=owned,
        processes=processes if processes is not None else {},
        edc_version=version,
    )


_STUCK_404_SECONDS = 10.0


_BOOT_ERROR = b"Error booting runtime"
"""What EDC logs when its boot fails; some failures (e.g. a port in use) leave the JVM running."""
_START_MARK = b"--- demo.connectors: starting the JVM ---\n"
"""Written to a side's log (appended to across starts) before each JVM starts."""


def _boot_failed(log: Path) -> bool:
    """Whether the JVM started last logged EDC's boot error."""
    try:
        return _BOOT_ERROR in log.read_bytes().rsplit(_START_MARK, 1)[-1]
    except OSError:
        return False


def _wait_healthy(procs: dict[str, subprocess.Popen[bytes]], workdir: Path, timeout: float) -> None:
    """Wait until both health endpoints say healthy; raise :class:`ConnectorError` with details.

    EDC 0.15.1 sometimes boots with its default web context answering 404 for good (seen in about one
    start in five here); a 404 that lasts :data:`_STUCK_404_SECONDS` ends the wait early so that the
    caller restarts the JVMs instead of waiting out ``timeout``.
    """
    deadline = time.monotonic() + timeout
    for side in (PROVIDER, CONSUMER):
        first_404: float | None = None
        while True:
            healthy, said = _health(side.health_url, timeout=1.0)
            if healthy:
                break
            proc = procs[side.name]
            log = workdir / f"{side.name}.log"
            if proc.poll() is not None:
                raise ConnectorError(f"{side.name} JVM exited with {proc.returncode}; log {log}:\n{_tail(log)}")
            if _boot_failed(log):
                raise ConnectorError(f"{side.name} JVM failed to boot (still running); log {log}:\n{_tail(log)}")
            now = time.monotonic()
            first_404 = (first_404 or now) if said.startswith("HTTP 404") else None
            if now > deadline or (first_404 is not None and now - first_404 > _STUCK_404_SECONDS):
                raise ConnectorError(
                    f"{side.name} not healthy at {side.health_url} (last answer: {said[:200]}); log tail:\n{_tail(log)}"
                )
            time.sleep(0.2)


def start(
    workdir: Path,
    data_server_url: str,
    *,
    timeout: float = 60.0,
    reuse: bool = True,
    seed: bool = True,
    jvm_opts: tuple[str, ...] = DEFAULT_JVM_OPTS,
    properties: dict[str, dict[str, str]] | None = None,
    version: str = DEFAULT_VERSION,
) -> Connectors:
    """Start (or reuse) the provider and consumer connectors of EDC ``version``, wait until ready and seed.

    ``properties`` adds settings per side (``{"consumer": {"edc.callback.cb1.uri": ...}}``), passed as
    system properties, which EDC reads over its properties file (e.g. static callbacks and vault
    secrets through ``edc.demo.vault.secrets.<alias>``), after the version's own settings
    (``edc_versions.EdcVersion.settings``). With ``properties``, or another ``version`` than the default,
    nothing is reused.

    - If ``reuse`` and both health endpoints already answer healthy, nothing is started and the returned
      handle has ``owned=False`` (its :meth:`Connectors.stop` is a no-op).
    - Otherwise both JVMs are started (each in its own process group, log in ``workdir/<side>.log``) and
      this waits up to ``timeout`` seconds for ``GET /api/check/health``; an exiting JVM or the deadline
      raises :class:`ConnectorError` with the log tail (and the JVMs already started are killed).
    - Seeding (idempotent, updates existing entries): assets ``demo-asset`` (source
      ``{data_server_url}/source/demo-asset``) and ``broken-asset`` (``{data_server_url}/source/broken``),
      policy ``allow-all`` and contract definition ``all-assets``.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    reusable = reuse and not properties and version == DEFAULT_VERSION
    if reusable and _healthy(PROVIDER.health_url) and _healthy(CONSUMER.health_url):
        conns = _handle(workdir, data_server_url, owned=False, version=version)
    else:
        busy = [
            p
            for s in (PROVIDER, CONSUMER)
            for p in (s.default_port, s.control_port, s.management_port, s.protocol_port, s.public_port)
            if _port_open(p)
        ]
        if busy:
            raise ConnectorError(f"ports already in use but connectors not healthy: {busy}")
        lib = build(version=version)
        version_settings = edc_versions.get(version).settings
        attempts = 3  # restarts: see _wait_healthy
        for attempt in range(1, attempts + 1):
            procs: dict[str, subprocess.Popen[bytes]] = {}
            conns = _handle(workdir, data_server_url, owned=True, processes=procs, version=version)
            try:
                for side in (PROVIDER, CONSUMER):
                    side_props = {**version_settings, **(properties or {}).get(side.name, {})}
                    procs[side.name] = _spawn(side, lib, workdir, jvm_opts, side_props)
                _wait_healthy(procs, workdir, timeout)
                break
            except ConnectorError as err:
                conns.stop()
                if attempt == attempts or "exited" in str(err) or "failed to boot" in str(err):
                    raise
                first_line = str(err).splitlines()[0]
                print(f"[connectors] restarting the connectors: {first_line}", file=sys.stderr, flush=True)
            except BaseException:
                conns.stop()
                raise
    if seed:
        try:
            seed_provider(conns)
        except BaseException:
            conns.stop()
            raise
    return conns


def _ctx() -> dict[str, str]:
    return {"@vocab": EDC_NS, "odrl": ODRL_NS}


def _upsert(client: httpx.Client, path: str, body: dict[str, Any], put_path: str | None = None) -> None:
    """POST a new entity; on 409 (exists, e.g. reused connectors) update it with PUT."""
    r = client.post(path, json=body)
    if r.status_code == 409:
        r = client.put(put_path or path, json=body)
    if r.status_code >= 300:
        raise ConnectorError(f"seeding {path} {body.get('@id')}: HTTP {r.status_code} {r.text}")


def add_asset(client: httpx.Client, asset_id: str, source_url: str) -> None:
    """Create or update a provider asset whose HttpData source is ``source_url`` (``client``: the provider's)."""
    _upsert(
        client,
        "/v3/assets",
        {
            "@context": _ctx(),
            "@id": asset_id,
            "properties": {"name": asset_id, "contenttype": "application/json"},
            "dataAddress": {
                "@type": "DataAddress",
                "type": "HttpData",
                "baseUrl": source_url,
                "proxyPath": "false",
            },
        },
    )


def seed_provider(conns: Connectors) -> None:
    """Create or update the provider's demo assets, the allow-all policy and the contract definition."""
    base = conns.data_server_url
    with conns.client("provider") as c:
        for asset_id, source in ((DEMO_ASSET, f"{base}/source/{DEMO_ASSET}"), (BROKEN_ASSET, f"{base}/source/broken")):
            add_asset(c, asset_id, source)
        _upsert(
            c,
            "/v3/policydefinitions",
            {
                "@context": _ctx(),
                "@id": POLICY_ID,
                "policy": {
                    "@context": "http://www.w3.org/ns/odrl.jsonld",
                    "@type": "Set",
                    "permission": [],
                    "prohibition": [],
                    "obligation": [],
                },
            },
            put_path=f"/v3/policydefinitions/{POLICY_ID}",
        )
        _upsert(
            c,
            "/v3/contractdefinitions",
            {
                "@context": _ctx(),
                "@id": CONTRACT_DEFINITION_ID,
                "accessPolicyId": POLICY_ID,
                "contractPolicyId": POLICY_ID,
                "assetsSelector": [],
            },
        )


def seed_remote(provider_management_url: str, data_server_url: str, timeout: float = 300.0) -> int:
    """Seed a provider that runs elsewhere (docker-compose.yaml): wait until its Management API answers,
    then :func:`seed_provider`. Returns a process exit code."""
    conns = replace(
        _handle(Path("."), data_server_url, owned=False), provider_management_url=provider_management_url.rstrip("/")
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            seed_provider(conns)
        except (httpx.HTTPError, ConnectorError) as err:
            if time.monotonic() > deadline:
                print(f"provider at {provider_management_url} not seeded: {err}", file=sys.stderr)
                return 1
            time.sleep(2)
            continue
        print(f"seeded {provider_management_url}: assets {DEMO_ASSET}, {BROKEN_ASSET} from {data_server_url}")
        return 0


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _get(obj: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if k in obj:
            return obj[k]
    return None


NEGOTIATION_ATTEMPTS = 3
"""EDC 0.15.1 now and then ends a negotiation by itself when two DSP messages overtake each other (a 409
such as "negotiation cannot be verified"); :func:`negotiate` negotiates again then."""


def negotiate(conns: Connectors, asset_id: str, timeout: float = 60.0) -> str:
    """:func:`negotiate_once`, again when EDC terminated the negotiation by itself (up to
    :data:`NEGOTIATION_ATTEMPTS` times); returns the contract agreement id."""
    for attempt in range(1, NEGOTIATION_ATTEMPTS + 1):
        try:
            return negotiate_once(conns, asset_id, timeout)
        except NegotiationTerminated as err:
            if attempt == NEGOTIATION_ATTEMPTS:
                raise
            print(f"[connectors] negotiating {asset_id} again: {err}", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


class NegotiationTerminated(ConnectorError):
    """A negotiation ended TERMINATED."""


def negotiate_once(conns: Connectors, asset_id: str, timeout: float = 60.0) -> str:
    """Negotiate a contract for ``asset_id`` on the consumer and return the contract agreement id.

    Requests the provider's catalog through the consumer (``POST /v3/catalog/request``), takes the first
    offer of the dataset ``asset_id``, starts ``POST /v3/contractnegotiations`` and polls
    ``GET /v3/contractnegotiations/{id}`` until ``FINALIZED`` (raises on ``TERMINATED`` or timeout).
    """
    with conns.client("consumer") as c:
        r = c.post(
            "/v3/catalog/request",
            json={
                "@context": _ctx(),
                "@type": "CatalogRequest",
                "counterPartyAddress": conns.provider_dsp_address,
                "counterPartyId": conns.provider_id,
                "protocol": conns.dsp_protocol,
                "querySpec": {
                    "filterExpression": [{"operandLeft": f"{EDC_NS}id", "operator": "=", "operandRight": asset_id}]
                },
            },
        )
        if r.status_code != 200:
            raise ConnectorError(f"catalog request failed: HTTP {r.status_code} {r.text}")
        catalog = r.json()
        datasets = [d for d in _as_list(_get(catalog, "dcat:dataset", "dataset")) if d.get("@id") == asset_id]
        if not datasets:
            raise ConnectorError(f"asset {asset_id!r} not in the provider catalog: {json.dumps(catalog)[:2000]}")
        offers = _as_list(_get(datasets[0], "odrl:hasPolicy", "hasPolicy"))
        if not offers:
            raise ConnectorError(f"no offer for {asset_id!r}: {json.dumps(datasets[0])[:2000]}")
        # The v3 catalog answer is compacted with the DSP 2025-1 context, whose ODRL terms have the same
        # names as in odrl.jsonld; re-send the offer under the ODRL context plus assigner and target.
        offer = {k: v for k, v in offers[0].items() if k != "@context"}
        policy = {
            **offer,
            "@context": "http://www.w3.org/ns/odrl.jsonld",
            "@type": "Offer",
            "assigner": conns.provider_id,
            "target": asset_id,
        }
        r = c.post(
            "/v3/contractnegotiations",
            json={
                "@context": _ctx(),
                "@type": "ContractRequest",
                "counterPartyAddress": conns.provider_dsp_address,
                "protocol": conns.dsp_protocol,
                "policy": policy,
            },
        )
        if r.status_code != 200:
            raise ConnectorError(f"contract request failed: HTTP {r.status_code} {r.text}")
        negotiation_id = r.json()["@id"]
        deadline = time.monotonic() + timeout
        while True:
            n = c.get(f"/v3/contractnegotiations/{negotiation_id}").json()
            state = n.get("state")
            if state == "FINALIZED":
                return str(n["contractAgreementId"])
            if state == "TERMINATED":
                raise NegotiationTerminated(f"negotiation {negotiation_id} TERMINATED: {n.get('errorDetail')}")
            if time.monotonic() > deadline:
                raise ConnectorError(f"negotiation {negotiation_id} still {state} after {timeout}s")
            time.sleep(0.1)


def start_push_transfer(
    conns: Connectors,
    contract_id: str,
    sink_url: str,
    callback_uri: str | None = None,
    events: tuple[str, ...] = ("transfer.process",),
    transactional: bool = False,
) -> str:
    """Start an ``HttpData-PUSH`` transfer on the consumer into ``sink_url``; return the transfer id.

    With ``callback_uri``, one ``CallbackAddress`` for ``events`` is attached (dynamic callback).
    """
    body: dict[str, Any] = {
        "@context": _ctx(),
        "@type": "TransferRequest",
        "protocol": conns.dsp_protocol,
        "counterPartyAddress": conns.provider_dsp_address,
        "contractId": contract_id,
        "transferType": "HttpData-PUSH",
        "dataDestination": {"type": "HttpData", "baseUrl": sink_url},
    }
    if callback_uri:
        body["callbackAddresses"] = [
            {"@type": "CallbackAddress", "uri": callback_uri, "events": list(events), "transactional": transactional}
        ]
    with conns.client("consumer") as c:
        r = c.post("/v3/transferprocesses", json=body)
    if r.status_code != 200:
        raise ConnectorError(f"transfer request failed: HTTP {r.status_code} {r.text}")
    return str(r.json()["@id"])


def wait_transfer_state(
    conns: Connectors, transfer_id: str, states: tuple[str, ...] = ("COMPLETED", "TERMINATED"), timeout: float = 60.0
) -> str:
    """Poll ``GET /v3/transferprocesses/{id}/state`` on the consumer until one of ``states``; return it."""
    deadline = time.monotonic() + timeout
    with conns.client("consumer") as c:
        while True:
            state = c.get(f"/v3/transferprocesses/{transfer_id}/state").json().get("state")
            if state in states:
                return str(state)
            if time.monotonic() > deadline:
                raise ConnectorError(f"transfer {transfer_id} still {state} after {timeout}s")
            time.sleep(0.1)


def _stop_event() -> threading.Event:
    """An event set by SIGINT/SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``build`` or ``up`` (see module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m demo.connectors", description="EDC demo connectors")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="assemble demo/edc/target/<version>/lib with Maven")
    b.add_argument("--force", action="store_true")
    b.add_argument("--edc-version", default=DEFAULT_VERSION, choices=list(edc_versions.VERSIONS))
    seed = sub.add_parser("seed", help="create the demo assets, policy and contract definition on a provider")
    seed.add_argument("--provider-management-url", default=PROVIDER.management_url)
    seed.add_argument("--data-server-url", required=True, help="the data server as the provider reaches it")
    seed.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the provider")
    up = sub.add_parser("up", help="build, start, seed, negotiate; run until SIGINT/SIGTERM")
    up.add_argument("--workdir", type=Path, required=True)
    up.add_argument("--data-server-url", required=True)
    up.add_argument("--timeout", type=float, default=120.0)
    up.add_argument("--edc-version", default=DEFAULT_VERSION, choices=list(edc_versions.VERSIONS))
    args = parser.parse_args(argv)

    if args.cmd == "build":
        t0 = time.monotonic()
        lib = build(force=args.force, version=args.edc_version)
        summary = {
            "edc_version": args.edc_version,
            "lib_dir": str(lib),
            "jars": len(list(lib.glob("*.jar"))),
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(summary))
        return 0

    if args.cmd == "seed":
        return seed_remote(args.provider_management_url, args.data_server_url, args.timeout)

    stop = _stop_event()  # installed before the JVMs start, so a SIGTERM during start still cleans up
    build(version=args.edc_version)
    t0 = time.monotonic()
    conns = start(args.workdir, args.data_server_url, timeout=args.timeout, version=args.edc_version)
    try:
        ready = time.monotonic() - t0
        agreements = {a: negotiate(conns, a) for a in (DEMO_ASSET, BROKEN_ASSET)}
        print(
            json.dumps({**conns.as_dict(), "ready_seconds": round(ready, 1), "agreements": agreements}, indent=2),
            flush=True,
        )
        stop.wait()
    finally:
        conns.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
