"""Session fixtures for the end-to-end tests: the real EDC connectors (Maven-assembled, started once),
the demo data server (provider source and consumer sink), a counting proxy in front of the consumer's
Management API and a real ``airflow standalone`` with this provider installed. All are started once per
test session and shared."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from demo.data_server import DataServerHandle, start_data_server
from tests.e2e.counting_proxy import CountingProxy

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("EDC_E2E_WORKDIR", REPO / ".work" / "e2e"))
DATA_SERVER_PORT = 18080
PROXY_PORT = 29393
AIRFLOW_PORT = 28080


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

    def slow_agreement(self) -> str:
        """An agreement for ``slow-asset`` (its source answers after 8 s, so the transfer stays running)."""
        if "slow-asset" not in self.agreements:
            with self.connectors.client("provider") as client:
                body = {
                    "@context": {"@vocab": edc.EDC_NS},
                    "@id": "slow-asset",
                    "properties": {"name": "slow asset"},
                    "dataAddress": {"type": "HttpData", "baseUrl": f"{self.data_server.url}/source/slow/8"},
                }
                response = client.post("/v3/assets", json=body)
                assert response.status_code in (200, 409), response.text
            self.agreements["slow-asset"] = edc.negotiate(self.connectors, "slow-asset")
        return self.agreements["slow-asset"]

    def consumer_state(self, transfer_id: str) -> str:
        """The consumer's state of a transfer, asked directly (not through the counting proxy)."""
        with self.connectors.client("consumer") as client:
            return str(client.get(f"/v3/transferprocesses/{transfer_id}/state").json()["state"])

    def connection_json(self) -> str:
        """An ``edc`` connection to the consumer, through the counting proxy."""
        return json.dumps(
            {"conn_type": "edc", "host": self.proxied_management_url, "password": self.connectors.consumer_api_key}
        )


@pytest.fixture(scope="session")
def edc_env() -> Iterator[EdcEnvironment]:
    WORK.mkdir(parents=True, exist_ok=True)
    sink_dir = WORK / "sink"
    shutil.rmtree(sink_dir, ignore_errors=True)
    data_server = start_data_server(DATA_SERVER_PORT, sink_dir)
    conns = edc.start(WORK / "connectors", data_server.url)
    proxy = CountingProxy(upstream=f"http://127.0.0.1:{edc.CONSUMER.management_port}", port=PROXY_PORT).start()
    try:
        agreements = {asset: edc.negotiate(conns, asset) for asset in (edc.DEMO_ASSET, edc.BROKEN_ASSET)}
        yield EdcEnvironment(conns, data_server, proxy, agreements)
    finally:
        proxy.stop()
        conns.stop()
        data_server.stop()


@pytest.fixture(scope="session")
def airflow(edc_env: EdcEnvironment) -> Iterator[AirflowStandalone]:
    home = WORK / "airflow"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {
        "AIRFLOW_CONN_EDC_DEFAULT": edc_env.connection_json(),
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"http://127.0.0.1:{AIRFLOW_PORT}/edc-callbacks",
        # far beyond a test's length: any request for a transfer's state would be a poll
        "AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL": "900",
    }
    with AirflowStandalone(home, REPO / "dags", port=AIRFLOW_PORT, extra_env=env) as af:
        yield af
