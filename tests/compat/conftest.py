"""Fixtures of the compatibility suite: every EDC version listed in ``demo/edc_versions.py``, one after
another, on real connectors with a real ``airflow standalone``.

One Airflow (and one data server) serves the whole session; its environment has one ``edc`` connection
per version (``edc_<version with _>``, extra ``connector_version``) and, per version, the static callbacks
``static-config --connector-version <version>`` rendered (names ``c<digits>`` / ``p<digits>``). The
session-scoped, version-parametrized :func:`compat_env` starts that version's provider and consumer with
those settings, and stops them before the next version starts (pytest orders the tests by version).

Results: every test carries a ``feature`` marker (a key of ``edc_versions.FEATURES``); its outcome per
version is merged into ``.work/compat/results.json`` (see :mod:`tests.compat.results`).
Select versions with ``EDC_COMPAT_VERSIONS=0.13.0,0.14.0`` (default: all listed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo import connectors as edc
from demo import edc_versions
from demo.airflow_env import AirflowStandalone, airflow_bin_dir, tuned_airflow_env
from demo.data_server import DataServerHandle, start_data_server
from tests.compat import results
from tests.e2e.counting_proxy import CountingProxy
from tests.harness import (
    AIRFLOW_PORT,
    DATA_SERVER_PORT,
    PROXY_PORT,
    RECEIVER_BASE,
    StaticSettings,
    consumer_connection_json,
    register_static_callback,
)

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("EDC_COMPAT_WORKDIR", REPO / ".work" / "compat"))
SELECTED = [v.strip() for v in os.environ.get("EDC_COMPAT_VERSIONS", ",".join(edc_versions.VERSIONS)).split(",") if v]


def conn_id(version: str) -> str:
    """The Airflow connection to the consumer of EDC ``version``: ``edc_0_13_0``."""
    return "edc_" + version.replace(".", "_")


def static_names(version: str) -> dict[str, str]:
    """The static callback names of ``version``'s connectors: ``{"consumer": "c0130", "provider": "p0130"}``."""
    digits = version.replace(".", "")
    return {"consumer": f"c{digits}", "provider": f"p{digits}"}


AIRFLOW_ENV = {
    **{f"AIRFLOW_CONN_{conn_id(v).upper()}": consumer_connection_json(connector_version=v) for v in SELECTED},
    "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": RECEIVER_BASE,
    # far beyond a test's length: any request for a transfer's state would be a poll
    "AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL": "900",
}


@dataclass
class CompatEnvironment:
    """One version's running connectors, with the session's Airflow and data server."""

    version: str
    connectors: edc.Connectors
    data_server: DataServerHandle
    proxy: CountingProxy
    airflow: AirflowStandalone
    static: dict[str, StaticSettings]
    agreement: str

    @property
    def row(self) -> edc_versions.EdcVersion:
        return edc_versions.get(self.version)

    @property
    def conn_id(self) -> str:
        return conn_id(self.version)

    def consumer_state(self, transfer_id: str) -> str:
        """The consumer's state of a transfer, asked directly (not through the counting proxy)."""
        with self.connectors.client("consumer") as client:
            return str(client.get(f"/v3/transferprocesses/{transfer_id}/state").json()["state"])


@pytest.fixture(scope="session")
def compat_airflow() -> Iterator[tuple[AirflowStandalone, dict[str, dict[str, StaticSettings]]]]:
    """``airflow standalone`` with a connection and two static callback registrations per version."""
    home = WORK / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = tuned_airflow_env(home, REPO / "dags", AIRFLOW_PORT, AIRFLOW_ENV)
    subprocess.run([str(airflow_bin_dir() / "airflow"), "db", "migrate"], env=env, check=True)
    static = {
        v: {side: register_static_callback(env, name, v) for side, name in static_names(v).items()} for v in SELECTED
    }
    with AirflowStandalone(home, REPO / "dags", port=AIRFLOW_PORT, extra_env=AIRFLOW_ENV) as af:
        yield af, static


@pytest.fixture(scope="session")
def compat_data_server() -> Iterator[DataServerHandle]:
    sink = WORK / "sink"
    shutil.rmtree(sink, ignore_errors=True)
    server = start_data_server(DATA_SERVER_PORT, sink)
    yield server
    server.stop()


@pytest.fixture(scope="session", params=SELECTED)
def compat_env(
    request: pytest.FixtureRequest,
    compat_airflow: tuple[AirflowStandalone, dict[str, dict[str, StaticSettings]]],
    compat_data_server: DataServerHandle,
) -> Iterator[CompatEnvironment]:
    """The provider and consumer of one listed EDC version, started with its static callback settings."""
    version: str = request.param
    af, static = compat_airflow
    properties = {side: s.jvm_properties() for side, s in static[version].items()}
    conns = edc.start(WORK / f"connectors-{version}", compat_data_server.url, properties=properties, version=version)
    proxy = CountingProxy(upstream=f"http://127.0.0.1:{edc.CONSUMER.management_port}", port=PROXY_PORT)
    try:
        proxy.start()
        agreement = edc.negotiate(conns, edc.DEMO_ASSET)
        yield CompatEnvironment(version, conns, compat_data_server, proxy, af, static[version], agreement)
    finally:
        proxy.stop()
        conns.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/compat/" in str(item.fspath):
            item.add_marker(pytest.mark.compat)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    results.record(item, report)
    return report
