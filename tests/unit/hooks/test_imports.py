"""The hooks load without the callback store: the connection form (Airflow imports the hook class for
it) must not pull in the store's SQLAlchemy models, its engine, or Alembic."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from airflow_edc_callbacks.hooks import jsonld

SCRIPT = r"""
import json, sys
from airflow.sdk import BaseHook  # Airflow loads parts of SQLAlchemy (3.1: Alembic too): what the hooks add counts
before = set(sys.modules)
from airflow_edc_callbacks.hooks import EdcManagementHook
from airflow_edc_callbacks.hooks.edc import EdcManagementHook as same
from airflow_edc_callbacks.hooks.static_callback import EdcStaticCallbackHook
form = (EdcManagementHook.get_connection_form_widgets(), EdcManagementHook.get_ui_field_behaviour())
added = sorted(set(sys.modules) - before)
print(json.dumps({
    "same_class": EdcManagementHook is same,
    "conn_type": EdcManagementHook.conn_type,
    "static_conn_type": EdcStaticCallbackHook.conn_type,
    "alembic_added": [m for m in added if m.split(".")[0] == "alembic"],
    "sqlalchemy_added": [m for m in added if m.split(".")[0] == "sqlalchemy"],
    "store_added": [m for m in added if m.startswith(("airflow_edc_callbacks.store", "airflow_edc_callbacks.ledger"))],
    "package_added": [m for m in added if m.startswith("airflow_edc_callbacks")],
}))
"""


def test_loading_the_hooks_loads_neither_the_store_nor_sqlalchemy_nor_alembic() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert (result["same_class"], result["conn_type"], result["static_conn_type"]) == (
        True,
        "edc",
        "edc_static_callback",
    )
    assert result["alembic_added"] == []  # Airflow 3.1's own BaseHook import loads Alembic already
    assert result["sqlalchemy_added"] == []
    assert result["store_added"] == []
    assert "airflow_edc_callbacks.hooks.jsonld" in result["package_added"]  # the check sees what it loads


def test_the_request_builders_import_no_airflow_and_no_io() -> None:
    """``hooks.jsonld`` (request bodies, catalog reading) imports only the standard library and the
    package's pure ``models``: no Airflow, no httpx, no store."""
    source = Path(jsonld.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported == {"__future__", "collections.abc", "typing", "airflow_edc_callbacks.models"}
    assert jsonld.terminate_transfer("v4", "r") == {
        "@context": ["https://w3id.org/edc/connector/management/v2"],
        "@type": "TerminateTransfer",
        "reason": "r",
    }
