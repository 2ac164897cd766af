"""Static callback registrations (Airflow connections in a real metastore) and the connector settings."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_edc_callbacks.hooks.static_callback import EdcStaticCallbackHook
from airflow_edc_callbacks.static_callbacks import (
    StaticCallbackRegistration,
    check_name,
    connector_settings,
    render_settings,
)

BASE = "http://airflow:8080/edc-callbacks"
REG = StaticCallbackRegistration(
    name="cb1", secret="s3cret", events=("transfer.process", "contract.negotiation"), vault_alias="cb1-secret"
)


def test_settings_for_018_and_016_differ_exactly_in_auth_key_names() -> None:
    new = connector_settings(REG, BASE, "0.18.0")
    old = connector_settings(REG, BASE, "0.16.1")
    assert new == {
        "edc.callback.cb1.uri": "http://airflow:8080/edc-callbacks/callbacks/static/cb1",
        "edc.callback.cb1.events": "transfer.process,contract.negotiation",
        "edc.callback.cb1.transactional": "false",
        "edc.callback.cb1.auth.key": "X-Edc-Callback-Auth",
        "edc.callback.cb1.auth.codeid": "cb1-secret",
    }
    assert set(new) ^ set(old) == {
        "edc.callback.cb1.auth.key",
        "edc.callback.cb1.auth.codeid",
        "edc.callback.cb1.auth-key",
        "edc.callback.cb1.auth-code-id",
    }
    assert {k: v for k, v in new.items() if "auth" not in k} == {k: v for k, v in old.items() if "auth" not in k}
    assert old["edc.callback.cb1.auth-key"] == new["edc.callback.cb1.auth.key"]
    assert old["edc.callback.cb1.auth-code-id"] == new["edc.callback.cb1.auth.codeid"]


def test_render_properties_and_env() -> None:
    settings = connector_settings(REG, BASE, "0.18.0")
    assert render_settings(settings, "properties").splitlines()[0] == (
        "edc.callback.cb1.uri=http://airflow:8080/edc-callbacks/callbacks/static/cb1"
    )
    env = render_settings(settings, "env").splitlines()
    assert env[0] == "EDC_CALLBACK_CB1_URI=http://airflow:8080/edc-callbacks/callbacks/static/cb1"
    assert "EDC_CALLBACK_CB1_AUTH_CODEID=cb1-secret" in env
    with pytest.raises(ValueError, match="no environment-variable form"):
        render_settings(connector_settings(REG, BASE, "0.16.0"), "env")


@pytest.mark.parametrize("name", ["CB1", "cb_1", "cb-1", "cb.1", ""])
def test_names_must_survive_environment_variables(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase letters or digits"):
        check_name(name)


def test_secret_is_not_in_repr() -> None:
    assert "s3cret" not in repr(REG)


@pytest.fixture
def metastore(tmp_path: Path, migrated_airflow_db: Callable[[Path], Path]) -> Path:
    """A real Airflow metastore (SQLite, migrated by `airflow db migrate`) in a fresh AIRFLOW_HOME."""
    return migrated_airflow_db(tmp_path / "airflow")


def test_register_rotate_list_unregister_in_the_metastore(metastore: Path) -> None:
    script = r"""
import json
from airflow_edc_callbacks.hooks.static_callback import EdcStaticCallbackHook
hook = EdcStaticCallbackHook()
first = hook.register("cb1", ["transfer.process"])
again = hook.register("cb1", ["transfer.process", "contract.negotiation"])
rotated = hook.register("cb1", ["transfer.process"], rotate=True)
read = hook.get_registration("cb1")
print(json.dumps({
    "same_secret_on_update": first.secret == again.secret,
    "new_secret_on_rotate": rotated.secret != again.secret,
    "read_back": read is not None and read.secret == rotated.secret and read.events == ("transfer.process",),
    "listed": hook.list_registrations(),
    "unknown": hook.get_registration("nope") is None,
    "deleted": hook.unregister("cb1"),
    "gone": hook.get_registration("cb1") is None,
}))
"""
    env = {
        **__import__("os").environ,
        "AIRFLOW_HOME": str(metastore),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{metastore}/airflow.db",
    }
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {
        "same_secret_on_update": True,
        "new_secret_on_rotate": True,
        "read_back": True,
        "listed": ["cb1"],
        "unknown": True,
        "deleted": True,
        "gone": True,
    }


def test_registration_from_an_environment_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "edc_static_callback", "password": "envsecret", "extra": {"events": ["transfer.process"]}}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_CB2", json.dumps(conn))
    registration = EdcStaticCallbackHook().get_registration("cb2")
    assert registration is not None
    assert (registration.secret, registration.events, registration.vault_alias) == (
        "envsecret",
        ("transfer.process",),
        "edc-static-callback-cb2",
    )


def test_static_config_cli_registers_and_renders(metastore: Path) -> None:
    env = {
        **__import__("os").environ,
        "AIRFLOW_HOME": str(metastore),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{metastore}/airflow.db",
        # every warning shown (e.g. SQLAlchemy's deprecations in Airflow's models): they go to stderr, never
        # between the settings on stdout
        "PYTHONWARNINGS": "always",
    }
    cli = [sys.executable, "-m", "airflow_edc_callbacks.cli", "static-config", "cb9"]
    first = subprocess.run(
        [
            *cli,
            "--events",
            "transfer.process",
            "--connector-version",
            "0.16.1",
            "--base-url",
            "http://af/edc-callbacks",
            "--show-secret",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert first.stdout.splitlines() == [
        "edc.callback.cb9.uri=http://af/edc-callbacks/callbacks/static/cb9",
        "edc.callback.cb9.events=transfer.process",
        "edc.callback.cb9.transactional=false",
        "edc.callback.cb9.auth-key=X-Edc-Callback-Auth",
        "edc.callback.cb9.auth-code-id=edc-static-callback-cb9",
    ]
    secret = first.stderr.strip().rsplit(": ", 1)[1]
    assert len(secret) >= 32
    again = subprocess.run(  # no --events: renders the stored registration, same secret
        [*cli, "--format", "env", "--base-url", "http://af/edc-callbacks"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert "EDC_CALLBACK_CB9_AUTH_CODEID=edc-static-callback-cb9" in again.stdout.splitlines()
    assert secret not in again.stderr  # printed only with --show-secret
    legacy_env = subprocess.run(
        [*cli, "--format", "env", "--connector-version", "0.16.0"], capture_output=True, text=True, env=env
    )
    assert legacy_env.returncode == 2
    assert "no environment-variable form" in legacy_env.stderr


def test_put_secret_creates_updates_or_reports_a_missing_secrets_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """A MOCK connector (httpx.MockTransport): the demo's EDC 0.15.1 has no Secrets API, so the create and
    update answers cannot come from a real connector here. The 404 case runs live in tests/e2e."""
    import httpx

    from airflow_edc_callbacks.hooks.edc import EdcManagementHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_EDC_DEFAULT", json.dumps({"conn_type": "edc", "host": "http://mock/management", "password": "k"})
    )
    vault: dict[str, str] = {}
    seen: list[tuple[str, str]] = []

    def secrets_api(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.method, request.url.path))
        assert request.headers["X-Api-Key"] == "k"
        assert (body["@type"], body["@context"]) == ("Secret", {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"})
        if request.method == "POST" and body["@id"] in vault:
            return httpx.Response(409, json=[{"message": "exists", "type": "ObjectConflict"}])
        vault[body["@id"]] = body["value"]
        return httpx.Response(200 if request.method == "POST" else 204, json={"@id": body["@id"]})

    hook = EdcManagementHook(transport=httpx.MockTransport(secrets_api))
    assert hook.put_secret("alias-1", "first") is True
    assert hook.put_secret("alias-1", "second") is True
    assert vault == {"alias-1": "second"}
    assert seen == [
        ("POST", "/management/v3/secrets"),
        ("POST", "/management/v3/secrets"),
        ("PUT", "/management/v3/secrets"),
    ]
    no_api = EdcManagementHook(transport=httpx.MockTransport(lambda r: httpx.Response(404, text="Not Found")))
    assert no_api.put_secret("alias-1", "x") is False
