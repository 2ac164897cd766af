"""Session fixtures for the end-to-end tests: the real EDC connectors (Maven-assembled, started once),
the demo data server (provider source and consumer sink), a counting proxy in front of the consumer's
Management API and a real ``airflow standalone`` with this provider installed. All are started once per
test session and shared.

Order: Airflow's home is prepared first and a static callback is registered for each connector with
``airflow-edc-callbacks static-config`` (as a user would); ``airflow standalone`` starts; then the
connectors start with exactly the settings that command printed (and its secret in their vault), so
their static callbacks reach a running receiver from their first event. A static callback that fails
would also stop EDC from calling the dynamic callbacks of the same event.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo import connectors as edc
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
from tests.harness import (
    airflow_store as airflow_store,  # re-exported: the e2e tests import it from here
)
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("EDC_E2E_WORKDIR", REPO / ".work" / "e2e"))
STATIC_CALLBACKS = {"consumer": "consumercb", "provider": "providercb"}
CONNECTOR_VERSION = "0.15.1"  # the EDC version Maven Central serves here (see demo/edc/pom.xml)
ATTEMPTS = 3
"""EDC 0.15.1 now and then terminates a transfer whose TransferStartMessage overtook the consumer's
REQUESTED (a 409 inside the connectors, reason null; see demo/edc/provider.properties). Tests that need
a transfer to complete start another one then, up to this many times."""


@dataclass
class EdcEnvironment:
    """The running connectors with their negotiated agreements."""

    connectors: edc.Connectors
    data_server: DataServerHandle
    proxy: CountingProxy
    agreements: dict[str, str]

    @property
    def proxied_management_url(self) -> str:
        return f"{self.proxy.url}{edc.CONSUMER.management_path}"

    def slow_agreement(self, seconds: int = 8) -> str:
        """An agreement for an asset whose source answers after ``seconds`` (so its transfers stay running).

        The asset is ``slow-asset`` for 8 s, else ``slow-asset-<seconds>``.
        """
        asset = "slow-asset" if seconds == 8 else f"slow-asset-{seconds}"
        if asset not in self.agreements:
            with self.connectors.client("provider") as client:
                edc.add_asset(client, asset, f"{self.data_server.url}/source/slow/{seconds}")
            self.agreements[asset] = edc.negotiate(self.connectors, asset)
        return self.agreements[asset]

    def consumer_state(self, transfer_id: str) -> str:
        """The consumer's state of a transfer, asked directly (not through the counting proxy)."""
        with self.connectors.client("consumer") as client:
            return str(client.get(f"/v3/transferprocesses/{transfer_id}/state").json()["state"])

    def final_state(self, transfer_id: str, timeout: float = 60) -> str:
        """Wait (asking the consumer directly) until the transfer is COMPLETED or TERMINATED."""
        return wait_until(
            lambda: (state := self.consumer_state(transfer_id)) in ("COMPLETED", "TERMINATED") and state,
            timeout,
            f"transfer {transfer_id} to finish",
        )

    def connection_json(self) -> str:
        """An ``edc`` connection to the consumer, through the counting proxy."""
        return consumer_connection_json()


V4_CONN_ID = "edc_v4"
V4_API_VERSION = "v4beta"
"""Management API v4 as EDC 0.15.1 serves it (``/v4beta``, the management/v2 context); 0.17+ serve ``/v4``."""

OPENLINEAGE_EVENTS = WORK / "airflow" / "openlineage" / "events"
"""Where the shared Airflow's OpenLineage file transport writes: one ``events-<time>.json`` file per event."""

AIRFLOW_ENV = {
    # the OpenLineage provider (test extra) emits each event into a file of its own under Airflow's home
    "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
        {"type": "file", "log_file_path": str(OPENLINEAGE_EVENTS), "append": False}
    ),
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "edc-e2e",
    "AIRFLOW_CONN_EDC_DEFAULT": consumer_connection_json(),
    f"AIRFLOW_CONN_{V4_CONN_ID.upper()}": consumer_connection_json(V4_API_VERSION),
    "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": RECEIVER_BASE,
    # far beyond a test's length: any request for a transfer's state would be a poll
    "AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL": "900",
    # the DAG runs here are about the deferral (deferred state, triggerer, resume, a kill of a deferred task):
    # defer at once, as before the worker-first wait (tests/unit/operators/test_worker_first.py covers that)
    "AIRFLOW__EDC_CALLBACKS__DEFER_AFTER": "0",
}


AIRFLOW_LOGIN = ("admin", secrets.token_urlsafe(16))
"""The one Airflow user (admin) of the end-to-end Airflow: its UI and API ask for a login (no
``simple_auth_manager_all_admins``, which from Airflow 3.2 makes every request an admin's), so a test can
be anonymous (tests/e2e/test_timeline_view.py)."""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """End-to-end tests that use a store of their own use a SQLite file (PostgreSQL runs in tests/unit)."""
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture(scope="session")
def airflow_home() -> tuple[Path, dict[str, StaticSettings]]:
    """A fresh AIRFLOW_HOME with its database and the two static callback registrations."""
    home = WORK / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    OPENLINEAGE_EVENTS.parent.mkdir(parents=True)
    env = tuned_airflow_env(home, REPO / "dags", AIRFLOW_PORT, AIRFLOW_ENV)
    bin_dir = airflow_bin_dir()  # this interpreter's, or $EDC_E2E_AIRFLOW_VENV's (another Airflow minor)
    subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    static = {side: register_static_callback(env, name, CONNECTOR_VERSION) for side, name in STATIC_CALLBACKS.items()}
    return home, static


@pytest.fixture(scope="session")
def airflow(airflow_home: tuple[Path, dict[str, StaticSettings]]) -> Iterator[AirflowStandalone]:
    home, _ = airflow_home
    with AirflowStandalone(home, REPO / "dags", port=AIRFLOW_PORT, extra_env=AIRFLOW_ENV, login=AIRFLOW_LOGIN) as af:
        yield af


@pytest.fixture(scope="session")
def static_settings(airflow_home: tuple[Path, dict[str, StaticSettings]]) -> dict[str, StaticSettings]:
    return airflow_home[1]


@pytest.fixture(scope="session")
def edc_env(airflow: AirflowStandalone, static_settings: dict[str, StaticSettings]) -> Iterator[EdcEnvironment]:
    WORK.mkdir(parents=True, exist_ok=True)
    sink_dir = WORK / "sink"
    shutil.rmtree(sink_dir, ignore_errors=True)
    data_server = start_data_server(DATA_SERVER_PORT, sink_dir)
    properties = {side: s.jvm_properties() for side, s in static_settings.items()}
    conns = edc.start(WORK / "connectors", data_server.url, properties=properties)
    proxy = CountingProxy(upstream=f"http://127.0.0.1:{edc.CONSUMER.management_port}", port=PROXY_PORT).start()
    try:
        agreements = {asset: edc.negotiate(conns, asset) for asset in (edc.DEMO_ASSET, edc.BROKEN_ASSET)}
        yield EdcEnvironment(conns, data_server, proxy, agreements)
    finally:
        proxy.stop()
        conns.stop()
        data_server.stop()


@functools.cache
def airflow_under_test() -> str:
    """The version of the Airflow the end-to-end tests drive (``$EDC_E2E_AIRFLOW_VENV``'s, else this one's)."""
    python = airflow_bin_dir() / "python"
    out = subprocess.run(
        [str(python), "-c", "import airflow; print(airflow.__version__)"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if item.get_closest_marker("smoke") is not None:
        results.record_smoke(item, report, airflow_under_test())
    return report
