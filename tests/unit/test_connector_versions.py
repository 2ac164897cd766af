"""What differs between EDC versions, handled in the product: the DSP protocol a connection of a given
``connector_version`` speaks, the Management API versions it serves, the static callback setting names;
and the demo's version table (demo/edc_versions.py) that the compatibility suite runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.connector_versions import parse_version, profile
from airflow_edc_callbacks.hooks.edc import EdcManagementHook
from airflow_edc_callbacks.hooks.jsonld import DEFAULT_PROTOCOL
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration, connector_settings
from demo import edc_versions
from tests.helpers import REPO

POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@pytest.mark.parametrize(
    ("version", "protocol", "path", "apis"),
    [
        ("0.11.1", "dataspace-protocol-http:2024/1", "/2024/1", ("v3",)),
        ("0.12.0", "dataspace-protocol-http:2024/1", "/2024/1", ("v3",)),
        ("0.13.0", "dataspace-protocol-http:2024/1", "/2024/1", ("v3",)),
        ("0.14.0", "dataspace-protocol-http:2025-1", "/2025-1", ("v3", "v4beta")),
        ("0.15.1", "dataspace-protocol-http:2025-1", "/2025-1", ("v3", "v4beta")),
        ("0.17.0", "dataspace-protocol-http:2025-1", "/2025-1", ("v3", "v4")),
        ("0.18.0-SNAPSHOT", "dataspace-protocol-http:2025-1", "/2025-1", ("v3", "v4")),
    ],
)
def test_profile_per_version(version: str, protocol: str, path: str, apis: tuple[str, ...]) -> None:
    connector = profile(version)
    assert (connector.dsp_protocol, connector.dsp_path, connector.management_api_versions) == (protocol, path, apis)
    assert connector.dsp_address("http://provider:19194/protocol/") == f"http://provider:19194/protocol{path}"


def test_unparsable_version_is_refused() -> None:
    with pytest.raises(ValueError, match="Not a connector version"):
        parse_version("latest")


def _hook(monkeypatch: pytest.MonkeyPatch, recorder: list[Any], **extra: Any) -> EdcManagementHook:
    conn = {"conn_type": "edc", "host": "http://consumer:29193/management", "password": "k", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_OLD", json.dumps(conn))

    def answer(request: httpx.Request) -> httpx.Response:
        recorder.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"@id": "tp-1"})

    return EdcManagementHook("edc_old", transport=httpx.MockTransport(answer))


def test_connection_of_an_older_connector_speaks_its_dsp_version(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    hook = _hook(monkeypatch, sent, connector_version="0.13.0")
    request = hook.build_transfer_request(
        counter_party_address="http://provider:19194/protocol/2024/1", contract_id="c", transfer_type="HttpData-PULL"
    )
    assert hook.start_transfer(request) == "tp-1"
    hook.request_catalog("http://provider:19194/protocol/2024/1")
    assert [(path, body["protocol"]) for path, body in sent] == [
        ("/management/v3/transferprocesses", "dataspace-protocol-http:2024/1"),
        ("/management/v3/catalog/request", "dataspace-protocol-http:2024/1"),
    ]
    assert hook.settings.connector_version == "0.13.0"


def test_explicit_protocol_wins_and_no_version_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch, [], connector_version="0.13.0", protocol="dataspace-protocol-http")
    assert hook.settings.protocol == "dataspace-protocol-http"
    assert _hook(monkeypatch, []).settings.protocol == DEFAULT_PROTOCOL == "dataspace-protocol-http:2025-1"


def test_api_version_the_connector_does_not_serve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _hook(monkeypatch, [], connector_version="0.13.0", api_version="v4beta")
    with pytest.raises(ValueError, match=r"EDC 0.13.0 serves no Management API 'v4beta' \(it serves v3\)"):
        _ = hook.settings


@pytest.mark.parametrize("version", ["0.12.0", "0.13.0", "0.14.0", "0.15.1"])
def test_static_settings_of_the_listed_versions_use_the_dashed_auth_names(version: str) -> None:
    reg = StaticCallbackRegistration("cb", "s3cret", ("transfer.process",), vault_alias="alias")
    settings = connector_settings(reg, "http://airflow:8080/edc-callbacks", version)
    assert settings["edc.callback.cb.auth-key"] == "X-Edc-Callback-Auth"
    assert settings["edc.callback.cb.auth-code-id"] == "alias"
    assert not any(".auth." in key for key in settings)


def _dependencies(pom: ET.Element) -> set[tuple[str, str, frozenset[str]]]:
    found = set()
    for dep in pom.iterfind("m:dependencies/m:dependency", POM_NS):
        exclusions = frozenset(
            f"{e.findtext('m:groupId', '', POM_NS)}:{e.findtext('m:artifactId', '', POM_NS)}"
            for e in dep.iterfind("m:exclusions/m:exclusion", POM_NS)
        )
        version = dep.findtext("m:version", "", POM_NS).replace("${edc.version}", "0.15.1")
        found.add((dep.findtext("m:artifactId", "", POM_NS), version, exclusions))
    return found


def test_default_row_is_the_runtime_of_demo_edc_pom() -> None:
    """demo/edc/pom.xml (the Docker image's runtime) and the table's default row name the same artifacts."""
    table = ET.fromstring(edc_versions.runtime_pom(edc_versions.get(edc_versions.DEFAULT_VERSION)))
    assert _dependencies(table) == _dependencies(ET.parse(REPO / "demo" / "edc" / "pom.xml").getroot())


@pytest.mark.parametrize("version", list(edc_versions.VERSIONS))
def test_every_row_renders_a_maven_project_and_matches_the_product_profile(version: str) -> None:
    row = edc_versions.get(version)
    deps = _dependencies(ET.fromstring(edc_versions.runtime_pom(row)))
    assert {(a, v) for a, v, _ in deps} >= {(m, version) for m in row.modules}
    assert (row.dsp_protocol, row.dsp_path) == (profile(version).dsp_protocol, profile(version).dsp_path)
    assert row.features <= set(edc_versions.FEATURES)


def test_unlisted_version_names_the_listed_ones() -> None:
    with pytest.raises(KeyError, match=r"EDC 0.14.1 is not listed .*0.15.1, 0.14.0, 0.13.0, 0.12.0"):
        edc_versions.get("0.14.1")


def test_runtime_build_marker_is_the_same_in_every_process() -> None:
    """A runtime is rebuilt only when its inputs change: their hash (``lib.inputs.sha256``) must not depend
    on the process's string hash seed (a row's feature set is a frozenset)."""
    script = (
        "from demo import connectors, edc_versions\n"
        "for row in edc_versions.VERSIONS.values():\n"
        "    print(row.version, connectors._inputs_hash(row, edc_versions.runtime_pom(row)))\n"
    )
    hashes = [
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2", "3")
    ]
    assert len(hashes[0].splitlines()) == len(edc_versions.VERSIONS)
    assert hashes[0] == hashes[1] == hashes[2]


def test_a_version_older_than_the_known_facts_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"connector_version 0\.10\.1: .*0\.11 and later.*'protocol' extra"):
        profile("0.10.1")
