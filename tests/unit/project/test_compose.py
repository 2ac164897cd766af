"""docker-compose.yaml: valid for Compose (checked by the docker-compose tool), and set up like the native
end-to-end test: the same connectors and properties, connection, receiver path, data server and the
Airflow settings that matter for callbacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from airflow_edc_callbacks.config import API_SERVER_PREFIX
from demo import connectors as edc
from demo.airflow_env import FAST_SETTINGS
from tests.e2e import conftest as e2e
from tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose validates docker-compose.yaml: bash scripts/_system_packages.sh (test.sh runs it)"
    return subprocess.run([tool, "-f", str(path), "config", "-q"], capture_output=True, text=True, check=False)


def test_compose_file_is_valid_for_compose(tmp_path: Path) -> None:
    done = _validate(COMPOSE)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    command: scheduler\n", "    command: {scheduler: 1}\n"))
    (tmp_path / "docker").symlink_to(REPO / "docker")
    assert _validate(broken).returncode != 0  # the tool does check the services' schema


def test_airflow_services_as_in_the_official_compose_with_two_triggerers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    assert [n for n, c in commands.items() if c == "triggerer"] == ["airflow-triggerer-1", "airflow-triggerer-2"]
    for name, command in (("airflow-apiserver", "api-server"), ("airflow-scheduler", "scheduler")):
        assert commands[name] == command
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert "airflow db migrate" in " ".join(services["airflow-init"]["command"])
    assert services["airflow-apiserver"]["build"]["dockerfile"] == "docker/airflow.Dockerfile"


def test_one_postgresql_holds_airflow_and_the_event_store(compose: dict[str, Any]) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    airflow_db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    store = urlsplit(env["AIRFLOW__EDC_CALLBACKS__STORE_URL"])
    assert store.scheme == "postgresql+psycopg"  # the driver with LISTEN/NOTIFY wake-ups
    assert airflow_db.hostname == store.hostname == "postgres"
    assert (airflow_db.path, store.path) == ("/airflow", "/edc_callbacks")
    assert "CREATE DATABASE edc_callbacks" in (REPO / "docker" / "postgres-init.sql").read_text()


def test_settings_match_the_native_end_to_end_test(compose: dict[str, Any]) -> None:
    env = compose["services"]["airflow-triggerer-1"]["environment"]
    # the connection: the consumer's Management API with its key, as the e2e connection (minus the proxy)
    conn = json.loads(env["AIRFLOW_CONN_EDC_DEFAULT"])
    native = json.loads(e2e.consumer_connection_json())
    assert conn["conn_type"] == native["conn_type"] == "edc"
    assert conn["password"] == native["password"] == edc.CONSUMER.api_key
    host = urlsplit(conn["host"])
    assert (host.hostname, host.port, host.path) == (
        "consumer",
        edc.CONSUMER.management_port,
        edc.CONSUMER.management_path,
    )
    # the receiver: on the api-server under the plugin's prefix, as in the e2e test
    assert urlsplit(env["AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL"]).path == API_SERVER_PREFIX
    assert urlsplit(e2e.RECEIVER_BASE).path == API_SERVER_PREFIX
    # every [edc_callbacks] option the e2e test sets, but its test-only ones (the 900 s fallback, and
    # defer_after 0 so that its tasks defer), is set here too
    native_options = {k for k in e2e.AIRFLOW_ENV if k.startswith("AIRFLOW__EDC_CALLBACKS__")}
    test_only = {"AIRFLOW__EDC_CALLBACKS__FALLBACK_CHECK_INTERVAL", "AIRFLOW__EDC_CALLBACKS__DEFER_AFTER"}
    assert native_options - test_only <= set(env)
    # several hosts: one signing key for all, not one generated per AIRFLOW_HOME
    assert env["AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY"]
    # deferral timing as the native runs tune it (a trigger fires within about a second)
    key = "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"
    assert env[key] == FAST_SETTINGS[key]


def test_connectors_are_the_tests_maven_assembly_with_their_properties(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / "docker" / "edc.Dockerfile").read_text()
    assert "-f demo/edc/pom.xml dependency:copy-dependencies -DincludeScope=runtime" in dockerfile
    for extension in edc.EXTENSION_DIRS:
        assert f"demo/edc/{extension.name}/pom.xml package" in dockerfile
        assert f"demo-{extension.name}.jar" in dockerfile
    for side in (edc.PROVIDER, edc.CONSUMER):
        options = compose["services"][side.name]["environment"]["JAVA_TOOL_OPTIONS"]
        assert f"-Dedc.fs.config=/opt/edc/{side.properties_file.name}" in options
        assert f"demo/edc/{side.properties_file.name}" in dockerfile
        # only host names change: the ports are the properties file's
        assert f"-Dedc.dsp.callback.address=http://{side.name}:{side.protocol_port}{side.protocol_path}" in options
        assert f"-Dedc.demo.public.endpoint=http://{side.name}:{side.public_port}{side.public_path}" in options


def test_data_server_and_seeding_as_the_tests(compose: dict[str, Any]) -> None:
    services = compose["services"]
    command = services["data-server"]["command"]
    assert command[:3] == ["python", "-m", "demo.data_server"]
    assert command[command.index("--port") + 1] == str(e2e.DATA_SERVER_PORT)
    seed = services["edc-seed"]["command"]
    assert seed[:4] == ["python", "-m", "demo.connectors", "seed"]
    assert seed[seed.index("--data-server-url") + 1] == f"http://data-server:{e2e.DATA_SERVER_PORT}"
    provider = urlsplit(seed[seed.index("--provider-management-url") + 1])
    assert (provider.port, provider.path) == (edc.PROVIDER.management_port, edc.PROVIDER.management_path)
