"""The package's shape, as the maintainers keep it: small modules, no ``assert`` used as a check in package
code (``python -O`` strips it), and every use of Airflow beyond its public interfaces for providers in one
version-gated module (``airflow_edc_callbacks._compat``). Import directions are checked by ``lint-imports``
(the contract in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "airflow_edc_callbacks"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)
MAX_LINES = 400

PUBLIC_AIRFLOW = (
    "airflow.sdk",
    "airflow.triggers.base",
    "airflow.plugins_manager",
    "airflow.providers.openlineage.extractors",
)
"""What providers may import from Airflow (the Task SDK, the trigger base classes, the plugin base, and the
OpenLineage provider's ``OperatorLineage``, its documented interface for operators' lineage methods).
``airflow.sdk.execution_time`` and ``airflow.sdk._shared`` are the SDK's internals."""
SDK_INTERNALS = ("airflow.sdk.execution_time", "airflow.sdk._shared")


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def _airflow_imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n == "airflow" or n.startswith("airflow.")]
    return found


def _is_public(module: str) -> bool:
    if any(module == m or module.startswith(m + ".") for m in SDK_INTERNALS):
        return False
    return any(module == m or module.startswith(m + ".") for m in PUBLIC_AIRFLOW)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_assert_in_package_code(path: Path) -> None:
    asserts = [n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Assert)]
    assert asserts == []


def test_airflow_internals_are_used_in_one_module_only() -> None:
    outside = {
        f"{_name(path)}:{line} {module}"
        for path in MODULES
        if path.name != "_compat.py"
        for line, module in _airflow_imports(ast.parse(path.read_text()))
        if not _is_public(module)
    }
    assert outside == set()
    inside = _airflow_imports(ast.parse((PACKAGE / "_compat.py").read_text()))
    assert [m for _, m in inside if not _is_public(m)]  # the one module that does
