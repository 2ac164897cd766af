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
from airflow_edc_callbacks.models import MAX_JSON_DEPTH, EventEnvelope
from airflow_edc_callbacks.redaction import CUT
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import verify_token
from tests.conftest import SIGNING_KEY
from tests.helpers import EDC_FIXTURES, envelope

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


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["events"], ["callback-url"], ["static-config"], ["purge"], ["doctor"]]
)
def test_every_subcommand_has_help(command: list[str]) -> None:
    result = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: airflow-edc-callbacks")


FIXTURES = EDC_FIXTURES


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
    header, *rest = capsys.readouterr().out.splitlines()
    assert header.startswith("Event store ")
    assert header.endswith(", oldest first:")
    assert rest == ["No events."]


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


def test_callback_url_notes_the_fallback_when_callback_base_url_is_not_set(
    edc_config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.internal:8080")
    assert main(["callback-url", "--correlation-id", "manual-2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("http://airflow.internal:8080/edc-callbacks/callbacks/manual-2.")
    assert "callback_base_url is not set: using [api] base_url + /edc-callbacks" in captured.err
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", "http://receiver.internal:8099")
    assert main(["callback-url", "--correlation-id", "manual-2"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("http://receiver.internal:8099/callbacks/manual-2.")
    assert "not set" not in captured.err


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


CONSOLE_SCRIPT = str(Path(sys.executable).parent / "airflow-edc-callbacks")


def test_events_json_is_alone_on_stdout(tmp_path: Path) -> None:
    """The real console script on a fresh store: Airflow's and Alembic's log lines (the store is created on
    first use) go to stderr, so stdout pipes into ``python -m json.tool``."""
    store = tmp_path / "fresh.db"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": f"sqlite:///{store}",
    }
    result = subprocess.run([CONSOLE_SCRIPT, "events", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    piped = subprocess.run(
        [sys.executable, "-m", "json.tool"], input=result.stdout, capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 0, piped.stderr
    assert "Running upgrade" in result.stderr  # the migration lines were written, to stderr
    assert f"0 event(s) from the event store sqlite:///{store}, oldest first" in result.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [["events"], ["events", "--json"], ["purge", "--older-than", "1d"]])
def test_store_that_cannot_be_opened_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    directory = f"sqlite:///{tmp_path}"  # a directory is no SQLite file
    assert main([*command, "--store-url", directory]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"airflow-edc-callbacks: error: cannot open the event store {directory}: ")
    assert "Traceback" not in captured.err

    port = _closed_port()
    for driver in ("psycopg", "pg8000"):  # refused; pg8000 is not installed (an ImportError) or refused too
        url = f"postgresql+{driver}://edc:hunter2-secret@127.0.0.1:{port}/events"
        assert main([*command, "--store-url", url]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        shown = f"postgresql+{driver}://edc:***@127.0.0.1:{port}/events"
        assert captured.err.startswith(f"airflow-edc-callbacks: error: cannot open the event store {shown}: ")
        assert "hunter2" not in captured.err


def _seed_many(store: EventStore, count: int) -> list[str]:
    ids = []
    for i in range(count):
        body = envelope("TransferProcessStarted", f"tp-{i}")
        store.record(EventEnvelope.model_validate(body), body, correlation_id=None)
        ids.append(body["id"])
    return ids


def test_events_tail_lists_the_newest_first(
    store: EventStore, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _seed_many(store, 5)
    assert main(["events", "--tail", "2", "--json", "--store-url", store_url]) == 0
    captured = capsys.readouterr()
    assert [e["id"] for e in json.loads(captured.out)] == [ids[4], ids[3]]
    assert "newest first" in captured.err
    assert main(["events", "--limit", "2", "--json", "--store-url", store_url]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [ids[0], ids[1]]
    assert main(["events", "--tail", "3", "--store-url", store_url]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.endswith("newest first:")
    assert [line.split(" id=")[1].split()[0] for line in lines] == [ids[4], ids[3], ids[2]]
    with pytest.raises(SystemExit) as info:
        main(["events", "--tail", "2", "--limit", "2", "--store-url", store_url])
    assert info.value.code == 2


SIGNATURE = "S1gnatureS1gnatureS1gnatureS1gnatureS1gnatu"
EDR_SECRETS = {
    "authorization": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjb25zdW1lciJ9.c2lnbmF0dXJl",
    "authCode": "auth-code-secret-1",
    "https://w3id.org/tractusx/auth/refreshToken": "refresh-token-secret-2",
}


def _nested(depth: int) -> dict:
    inner: dict = {"leaf": f"http://h/edc-callbacks/callbacks/corr-deep.{SIGNATURE}"}
    for _ in range(depth - 1):
        inner = {"next": inner}
    return inner


def _hostile_events(store: EventStore) -> None:
    """Events the receiver of older versions accepted, recorded without today's validation."""
    from airflow_edc_callbacks.models import EventPayload

    bodies = {
        "deep": {**envelope("TransferProcessStarted", "tp-deep"), "deep": _nested(999)},  # 1000 deep in all
        "future": envelope("TransferProcessCompleted", "tp-future", at=10**15),
        "crlf": {
            **envelope("TransferProcessCompleted\r\nFAKE LINE", "tp-crlf\n\x1b[2J"),
            "id": "id-with\r\nline-break",
        },
        "callback": envelope(
            "TransferProcessRequested",
            "tp-callback",
            callbackAddresses=[
                {"uri": f"http://airflow:8080/edc-callbacks/callbacks/corr-x.{SIGNATURE}", "events": ["transfer"]}
            ],
        ),
        "edr": envelope(
            "TransferProcessStarted",
            "tp-edr",
            dataAddress={"endpoint": "http://provider/public", "properties": dict(EDR_SECRETS)},
        ),
    }
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(5000)  # the JSON encoder needs it for the 1000-deep body (older versions had it)
    try:
        for body in bodies.values():
            payload = EventPayload.model_construct(transferProcessId=body["payload"]["transferProcessId"])
            constructed = EventEnvelope.model_construct(
                id=body["id"], at=body["at"], type=body["type"], payload=payload
            )
            store.record(constructed, body, correlation_id=None)
    finally:
        sys.setrecursionlimit(previous)


def test_events_output_survives_old_stores_and_shows_no_secret(
    store: EventStore, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_events(store)
    assert main(["events", "--json", "--store-url", store_url]) == 0
    captured = capsys.readouterr()
    listed = json.loads(captured.out)
    assert len(listed) == 5
    for text in (captured.out, captured.err):
        assert SIGNATURE not in text
        assert not any(secret in text for secret in EDR_SECRETS.values())
    by_process = {e["body"]["payload"]["transferProcessId"]: e for e in listed}
    assert by_process["tp-future"]["at"] == 10**15
    assert by_process["tp-callback"]["body"]["payload"]["callbackAddresses"][0]["uri"] == (
        "http://airflow:8080/edc-callbacks/callbacks/corr-x.***"
    )
    assert by_process["tp-edr"]["body"]["payload"]["dataAddress"]["properties"] == dict.fromkeys(EDR_SECRETS, "***")
    assert by_process["tp-crlf\n\x1b[2J"]["id"] == "id-with\r\nline-break"  # JSON escapes it
    depth, node = 0, by_process["tp-deep"]["body"]
    while isinstance(node, dict):
        depth, node = depth + 1, node.get("deep", node.get("next"))
    assert depth == MAX_JSON_DEPTH
    assert node == CUT

    assert main(["events", "--store-url", store_url]) == 0
    text = capsys.readouterr().out
    assert SIGNATURE not in text
    lines = text.splitlines()
    assert len(lines) == 6  # the header and one line per event: no stored value breaks a line
    assert "\r" not in text
    assert "\x1b" not in text
    crlf = next(line for line in lines if "tp-crlf" in line)
    assert "TransferProcessCompleted\\r\\nFAKE LINE" in crlf
    assert "tp-crlf\\n\\x1b[2J" in crlf
    assert "id=id-with\\r\\nline-break" in crlf
    assert "at=1000000000000000 ms" in next(line for line in lines if "tp-future" in line)
