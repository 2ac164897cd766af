"""The documentation site: the example DAGs' howto markers are shown by its pages, its generated references
name every option, subcommand and public class, and the README links pages that exist.

The build itself (``sphinx-build -W``) runs in ``scripts/test.sh``; these tests check what a clean build
cannot: a marker no page shows, a README link to a page that moved.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from airflow_edc_callbacks.cli.main import build_parser
from airflow_edc_callbacks.config import OPTIONS, SECTION
from airflow_edc_callbacks.get_provider_info import get_provider_info
from tests.helpers import REPO

DOCS = REPO / "docs"
START = re.compile(r"#\s*\[START (howto_\w+)\]")
INCLUDED = re.compile(r':start-after:\s*"?\[START (howto_\w+)\]"?')


@pytest.fixture(scope="module")
def edc_docs() -> ModuleType:
    """docs/_ext/edc_docs.py, the extension that writes the generated pages (it needs no Sphinx to import)."""
    spec = importlib.util.spec_from_file_location("edc_docs", DOCS / "_ext" / "edc_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("edc_docs", module)
    spec.loader.exec_module(module)
    return module


def _pages() -> dict[Path, str]:
    return {page: page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md") if "_build" not in page.parts}


def test_every_howto_marker_of_the_example_dags_is_shown_by_a_page() -> None:
    markers = {m for dag in (REPO / "dags").glob("*.py") for m in START.findall(dag.read_text(encoding="utf-8"))}
    shown = {m for text in _pages().values() for m in INCLUDED.findall(text)}
    assert len(markers) >= 8
    assert markers - shown == set()
    assert shown - markers == set()  # a page that includes a marker no DAG has would fail the build


def test_every_operator_and_sensor_has_a_guide() -> None:
    guides = "\n".join(text for page, text in _pages().items() if page.parent.name == "howto")
    for name in (
        "EdcTransferOperator",
        "EdcContractNegotiationOperator",
        "EdcNegotiatedTransferOperator",
        "EdcPullDataOperator",
        "EdcTransferSensor",
        "EdcCallbackEventTrigger",
    ):
        assert f"# {name}" in guides


def test_configuration_reference_is_generated_from_the_options(edc_docs: ModuleType) -> None:
    page = edc_docs.configuration_reference()
    for name, option in OPTIONS.items():
        assert f"### `{name}`" in page
        assert f"`AIRFLOW__{SECTION.upper()}__{name.upper()}`" in page
        if option.default is not None:
            assert f"Default: `{option.default}`" in page


def test_connection_fields_are_generated_from_the_provider_info(edc_docs: ModuleType) -> None:
    page = edc_docs.connection_fields()
    (edc,) = get_provider_info()["connection-types"]
    assert "Connection type `edc`" in page
    for name in edc["conn-fields"]:
        assert f"| extra `{name}` |" in page
    assert "| extra `tractusx` | Tractus-X EDC | boolean | `false` |" in page


def test_cli_reference_is_generated_from_the_parser(edc_docs: ModuleType) -> None:
    page = edc_docs.cli_reference()
    subcommands = edc_docs._subcommands(build_parser())
    assert {"serve", "events", "callback-url", "static-config", "terminate", "purge"} <= set(subcommands)
    for name in subcommands:
        assert f"## `{name}`" in page
        assert f"usage: airflow-edc-callbacks {name}" in page


def test_every_public_operator_sensor_trigger_and_hook_gets_an_api_page(edc_docs: ModuleType) -> None:
    for package in edc_docs.API_PACKAGES:
        names = importlib.import_module(package).__all__
        assert names
        for name in names:
            page = edc_docs.api_page(package, name, "x")
            assert page.startswith(f"# {name}\n")
            assert f".. autoclass:: {package}.{name}" in page


def test_the_provider_declares_the_documentation_url() -> None:
    """Airflow reads a provider's documentation-url from its Project-URL "Documentation"."""
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    urls = pyproject[pyproject.index("[project.urls]") :].split("\n[", 1)[0]
    assert 'Documentation = "https://airflow-edc-callbacks.readthedocs.io/"' in urls
    extras = pyproject[pyproject.index("[project.optional-dependencies]") :].split("\n[", 1)[0]
    docs_extra = extras[extras.index("docs = [") :].split("]", 1)[0]
    for package in ("sphinx>=", "myst-parser>=", "furo>="):
        assert f'"{package}' in docs_extra
    readthedocs = (REPO / ".readthedocs.yaml").read_text(encoding="utf-8")
    assert "configuration: docs/conf.py" in readthedocs
    assert "- docs" in readthedocs


def test_readme_is_short_keeps_the_two_commands_and_links_pages_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 160
    assert "## Try it: the two commands" in readme
    assert "bash scripts/demo.sh     # the main job end to end" in readme
    assert "bash scripts/test.sh     # the whole test suite" in readme
    links = re.findall(r"\]\((docs/[^)#]*)", readme)
    assert len(links) >= 15
    for link in links:
        assert (REPO / link).exists(), link
