"""The demo's settings that the ``airflow`` and ``airflow-edc-callbacks`` commands need to work on it: its
``AIRFLOW_HOME``, metadata database, event store, receiver URL, signing key and ``edc_default`` connection.

``python -m demo env`` prints them as ``export`` lines (``eval "$(python -m demo env)"``), and the demo
passes the same values to its ``airflow standalone``.
"""

from __future__ import annotations

import json
import secrets
import shlex
from pathlib import Path

from demo.connectors import CONSUMER

SIGNING_KEY_FILE = "callback_signing.key"
"""Kept in the demo's work directory (not in AIRFLOW_HOME, which every demo run starts afresh)."""

LAPTOP_PARALLELISM = 4
"""``[core] parallelism`` of the demo's LocalExecutor: the worker processes it keeps (Airflow's default, 32,
keeps 32 idle workers, about 6 GB on a laptop); the demo's DAG runs at most four tasks at once."""


def signing_key(workdir: Path) -> str:
    """The demo's ``callback_signing_key``: generated once into ``workdir``, the same for every run after."""
    path = workdir / SIGNING_KEY_FILE
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def provider_env(workdir: Path, airflow_port: int) -> dict[str, str]:
    """The ``[edc_callbacks]`` settings and ``edc_default`` connection of the demo (receiver on the api-server)."""
    home = workdir / "airflow"
    connection = {"conn_type": "edc", "host": CONSUMER.management_url, "password": CONSUMER.api_key}
    return {
        "AIRFLOW_CONN_EDC_DEFAULT": json.dumps(connection),
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": f"sqlite:///{home / 'edc_callbacks.db'}",
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL": f"http://127.0.0.1:{airflow_port}/edc-callbacks",
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": signing_key(workdir),
    }


def cli_env(workdir: Path, airflow_port: int) -> dict[str, str]:
    """Everything a shell needs for ``airflow`` and ``airflow-edc-callbacks`` commands on the running demo."""
    home = workdir / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{airflow_port}",
        **provider_env(workdir, airflow_port),
    }


def exports(workdir: Path, airflow_port: int, venv_bin: Path) -> str:
    """``export`` lines for a POSIX shell (values quoted), ending with the ``.venv/bin`` on ``PATH``."""
    lines = [f"export {key}={shlex.quote(value)}" for key, value in cli_env(workdir, airflow_port).items()]
    lines.append(f'export PATH={shlex.quote(str(venv_bin))}:"$PATH"')
    return "\n".join(lines) + "\n"
