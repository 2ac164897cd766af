"""The compatibility tables of docs/compatibility.md are generated from the results of the compatibility
runs, and ``--check`` fails when the page claims what the last run did not show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from demo import compat_table


def _results(push: str = "pass", date: str = "2026-12-01") -> dict[str, Any]:
    entry = {"date": date, "seconds": 1.0, "test": "t"}
    return {
        "format": 1,
        "features": {"negotiation": "...", "push": "...", "edr_cache_api": "..."},
        "versions": {
            "0.13.0": {
                "negotiation": {**entry, "outcome": "pass"},
                "push": {**entry, "outcome": push},
                "edr_cache_api": {**entry, "outcome": "not-offered"},
            },
            "0.15.1": {
                "negotiation": {**entry, "outcome": "pass"},
                "push": {**entry, "outcome": "pass"},
                "edr_cache_api": {**entry, "outcome": "pass"},
            },
        },
        "airflow": {"3.1.8": {"push": {**entry, "outcome": "pass"}}, "3.10.0": {"push": {**entry, "outcome": "fail"}}},
    }


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    page = tmp_path / "compatibility.md"
    page.write_text(f"# x\n\n## Compatibility\n\n{compat_table.BEGIN}\nold\n{compat_table.END}\n\nrest\n")
    return page, tmp_path / "results.json"


def _run(page: Path, results: Path, data: dict[str, Any], *extra: str) -> int:
    results.write_text(json.dumps(data))
    return compat_table.main(["--page", str(page), "--results", str(results), *extra])


def test_tables_list_versions_newest_first_with_each_outcome(files: tuple[Path, Path]) -> None:
    page, results = files
    assert _run(page, results, _results(push="fail")) == 0
    text = page.read_text()
    assert text.startswith("# x\n\n## Compatibility\n\n")
    assert text.endswith(f"{compat_table.END}\n\nrest\n")
    assert "old" not in text
    assert "Last run: 2026-12-01." in text
    assert "| EDC | contract negotiation | PUSH transfer | EDR cache API |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 0.")]
    assert rows == ["| 0.15.1 | pass | pass | pass |", "| 0.13.0 | pass | **fail** | not offered |"]
    assert [line for line in text.splitlines() if line.startswith("| 3.")] == [
        "| 3.10.0 | **fail** |",
        "| 3.1.8 | pass |",
    ]


def test_check_passes_on_the_same_outcomes_of_another_day(files: tuple[Path, Path], capsys: Any) -> None:
    page, results = files
    assert _run(page, results, _results()) == 0
    assert _run(page, results, _results(date="2027-01-05"), "--check") == 0
    assert "match" in capsys.readouterr().out


def test_check_fails_when_an_outcome_changed_and_leaves_the_page_alone(files: tuple[Path, Path], capsys: Any) -> None:
    page, results = files
    assert _run(page, results, _results()) == 0
    before = page.read_text()
    assert _run(page, results, _results(push="fail"), "--check") == 1
    assert page.read_text() == before
    err = capsys.readouterr().err
    assert "differ" in err
    assert "| 0.13.0 | pass | **fail** | not offered |" in err


def test_missing_markers_or_results_are_reported(tmp_path: Path, capsys: Any) -> None:
    page = tmp_path / "compatibility.md"
    page.write_text("# no markers\n")
    results = tmp_path / "results.json"
    assert _run(page, results, _results()) == 2
    assert "lacks the markers" in capsys.readouterr().err
    assert compat_table.main(["--page", str(page), "--results", str(tmp_path / "none.json")]) == 2
    assert "cannot read the compatibility results" in capsys.readouterr().err


def test_the_documentation_page_holds_the_tables_the_check_reads() -> None:
    text = compat_table.PAGE.read_text(encoding="utf-8")
    assert compat_table.PAGE.parts[-2:] == ("docs", "compatibility.md")
    block = text[text.index(compat_table.BEGIN) + len(compat_table.BEGIN) : text.index(compat_table.END)]
    assert "| EDC |" in block
    assert "| Airflow |" in block
