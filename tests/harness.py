"""Pieces shared by the end-to-end suite (tests/e2e) and the compatibility suite (tests/compat): the fixed
ports, the Airflow connection to the consumer, static callback settings as ``static-config`` renders them
and the running Airflow's event store."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

from airflow_edc_callbacks.store import EventStore
from demo import connectors as edc
from demo.airflow_env import AirflowStandalone, airflow_bin_dir

DATA_SERVER_PORT = 18080
PROXY_PORT = 29393
AIRFLOW_PORT = 28080
RECEIVER_BASE = f"http://127.0.0.1:{AIRFLOW_PORT}/edc-callbacks"


def consumer_connection_json(api_version: str = "v3", connector_version: str | None = None) -> str:
    """An ``edc`` connection to the consumer, through the counting proxy, on Management API ``api_version``
    (with extra ``connector_version`` when given)."""
    host = f"http://127.0.0.1:{PROXY_PORT}{edc.CONSUMER.management_path}"
    extra: dict[str, str] = {"api_version": api_version}
    if connector_version:
        extra["connector_version"] = connector_version
    return json.dumps({"conn_type": "edc", "host": host, "password": edc.CONSUMER.api_key, "extra": extra})


def airflow_store(af: AirflowStandalone) -> EventStore:
    """The event store of the running Airflow (the default SQLite file in its AIRFLOW_HOME)."""
    return EventStore(f"sqlite:///{af.home / 'edc_callbacks.db'}")


@dataclass
class StaticSettings:
    """What ``static-config`` printed for one connector: its settings and the secret for its vault."""

    settings: dict[str, str]
    vault_alias: str
    secret: str

    def jvm_properties(self) -> dict[str, str]:
        return {**self.settings, f"edc.demo.vault.secrets.{self.vault_alias}": self.secret}


def register_static_callback(env: dict[str, str], name: str, connector_version: str) -> StaticSettings:
    """Run ``airflow-edc-callbacks static-config NAME --events transfer.process --connector-version V
    --show-secret`` (as a user would) and parse what it printed.

    :raises subprocess.CalledProcessError: the command failed.
    """
    cmd = [
        str(airflow_bin_dir() / "airflow-edc-callbacks"),  # of the Airflow under test (EDC_E2E_AIRFLOW_VENV)
        "static-config",
        name,
        "--events",
        "transfer.process",
        "--connector-version",
        connector_version,
        "--show-secret",
    ]
    done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    settings = dict(line.split("=", 1) for line in done.stdout.splitlines() if line)
    alias = next(v for k, v in settings.items() if k.endswith((".auth-code-id", ".auth.codeid")))
    note = next(line for line in done.stderr.splitlines() if line.startswith("# Store the secret"))
    return StaticSettings(settings, alias, note.rsplit(": ", 1)[1])
