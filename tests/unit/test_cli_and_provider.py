from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_edc_callbacks import __version__
from airflow_edc_callbacks.cli import main
from airflow_edc_callbacks.get_provider_info import get_provider_info
from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import verify_token
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope

CLI = [sys.executable, "-m", "airflow_edc_callbacks.cli"]


def test_provider_info_matches_airflow_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-edc-callbacks"
    assert info["connection-types"][0]["connection-type"] == "edc"
    assert set(info["config"]["edc_callbacks"]["options"]) >= {
        "store_url",
        "callback_base_url",
        "callback_signing_key",
        "fallback_check_interval",
        "retention",
    }


def test_entry_points_registered() -> None:
    providers = {ep.value: ep.name for ep in entry_points(group="apache_airflow_provider")}
    plugins = {ep.name: ep.value for ep in entry_points(group="airflow.plugins")}
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert providers["airflow_edc_callbacks.get_provider_info:get_provider_info"] == "provider_info"
    assert plugins["edc_callbacks"] == "airflow_edc_callbacks.plugin:EdcCallbacksPlugin"
    assert scripts["airflow-edc-callbacks"] == "airflow_edc_callbacks.cli:main"


@pytest.mark.parametrize("command", [[], ["serve"], ["events"], ["callback-url"], ["static-config"], ["purge"]])
def test_every_subcommand_has_help(command: list[str]) -> None:
    result = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: airflow-edc-callbacks")


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edc"


def _seed(store: EventStore) -> dict:
    body = envelope("TransferProcessCompleted", "tp-cli")
    store.record(EventEnvelope.model_validate(body), body, correlation_id="corr-cli")
    return body


def test_events_lists_by_process_and_token(
    store: EventStore, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _seed(store)
    assert main(["events", "--process-id", "tp-cli", "--json", "--store-url", store_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["id"], e["type"], e["correlation_id"]) for e in listed] == [
        (body["id"], "TransferProcessCompleted", "corr-cli")
    ]
    assert main(["events", "--token", "corr-cli.any-signature", "--store-url", store_url]) == 0
    assert "TransferProcessCompleted" in capsys.readouterr().out
    assert main(["events", "--process-id", "nope", "--store-url", store_url]) == 0
    assert capsys.readouterr().out.strip() == "No events."


def test_events_never_print_an_edr_token(store: EventStore, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = json.loads((FIXTURES / "pull_TransferProcessStarted.json").read_text())
    store.record(EventEnvelope.model_validate(started), started, correlation_id=None)
    properties = started["payload"]["dataAddress"]["properties"]
    token = properties["https://w3id.org/edc/v0.0.1/ns/authorization"]
    assert main(["events", "--json", "--store-url", store_url]) == 0
    out = capsys.readouterr().out
    assert token not in out
    shown = json.loads(out)[0]["body"]["payload"]["dataAddress"]["properties"]
    assert shown == {**properties, "https://w3id.org/edc/v0.0.1/ns/authorization": "***"}


def test_redaction_covers_refresh_tokens_in_any_key_form() -> None:
    from airflow_edc_callbacks.redaction import redact_tokens

    edr = {
        "endpoint": "http://p/public",
        "authType": "bearer",
        "edc:authorization": "t1",
        "tx-auth:refreshToken": "t2",
        "https://w3id.org/tractusx/auth/refreshToken": "t3",
        "nested": [{"clientSecret": "t4", "expiresIn": "300"}],
    }
    assert redact_tokens(edr) == {
        "endpoint": "http://p/public",
        "authType": "bearer",
        "edc:authorization": "***",
        "tx-auth:refreshToken": "***",
        "https://w3id.org/tractusx/auth/refreshToken": "***",
        "nested": [{"clientSecret": "***", "expiresIn": "300"}],
    }


def test_callback_url_is_signed(edc_config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["callback-url", "--correlation-id", "manual-1", "--base-url", "http://airflow:8080/edc-callbacks"]) == 0
    )
    url = capsys.readouterr().out.strip()
    prefix = "http://airflow:8080/edc-callbacks/callbacks/"
    assert url.startswith(prefix)
    assert verify_token(SIGNING_KEY, url[len(prefix) :]) == "manual-1"


def test_purge(store: EventStore, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(store)
    assert main(["purge", "--older-than", "1d", "--store-url", store_url]) == 0
    assert "Deleted 0 event(s)" in capsys.readouterr().out
    assert main(["purge", "--older-than", "0s", "--store-url", store_url]) == 0
    assert "Deleted 1 event(s)" in capsys.readouterr().out
    assert store.events() == []


def test_bad_duration_is_a_usage_error(store_url: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["purge", "--older-than", "forever", "--store-url", store_url])
    assert info.value.code == 2


def test_airflow_lists_the_provider_and_the_plugin(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    airflow_cli = str(Path(sys.executable).parent / "airflow")
    providers = subprocess.run(
        [airflow_cli, "providers", "list", "-o", "json"], capture_output=True, text=True, check=True, env=env
    )
    listed = {p["package_name"]: p for p in json.loads(providers.stdout)}
    assert listed["airflow-edc-callbacks"]["version"] == __version__
    plugins = subprocess.run(
        [airflow_cli, "plugins", "-o", "json"], capture_output=True, text=True, check=True, env=env
    )
    names = {p["name"] for p in json.loads(plugins.stdout)}
    assert "edc_callbacks" in names
