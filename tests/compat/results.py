"""The compatibility results file: version x feature -> outcome, merged across runs.

Format (:data:`RESULTS_FILE`, ``.work/compat/results.json``)::

    {
      "format": 1,
      "features": {"push": "HttpData-PUSH transfer ...", ...},      # demo.edc_versions.FEATURES
      "versions": {
        "0.13.0": {
          "push": {"outcome": "pass", "date": "2026-11-30", "seconds": 41.2, "test": "<pytest node id>"},
          "edr_cache_api": {"outcome": "not-offered", ...},
          ...
        }
      },
      "airflow": {                                        # per Airflow version: unit suite, end-to-end smoke
        "3.1.8": {"unit": {"outcome": "pass", ...}, "push_dag": {...}, "sensor_dag": {...}, "pipeline_dag": {...}}
      }
    }

``versions`` comes from the compatibility suite (``tests/compat``), ``airflow`` from the end-to-end tests
marked ``smoke(<name>)``, keyed by the version of the Airflow they ran against (``scripts/e2e_smoke.sh``;
the main suite records its own Airflow's), and from the unit suite (``unit``: every test of ``tests/unit``
in the session passed, on the Airflow of the interpreter that ran them). ``python -m demo.compat_table``
turns the file into the tables of docs/compatibility.md.

``outcome`` is ``pass``, ``fail`` (``detail`` then holds the first line of the error) or ``not-offered`` (the
version's row in ``demo/edc_versions.py`` does not list the feature). A later run of the same version and
feature replaces the earlier entry; other entries are kept, so versions can run separately.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from demo.edc_versions import FEATURES

RESULTS_FILE = Path(__file__).resolve().parents[2] / ".work" / "compat" / "results.json"
"""Where every run merges its outcomes (what ``python -m demo.compat_table`` reads by default)."""

NOT_OFFERED = "not offered"
"""Reason prefix of ``pytest.skip`` for a feature the version does not offer."""

_recorded: dict[str, dict[str, dict[str, Any]]] = {}
_smoke: dict[str, dict[str, dict[str, Any]]] = {}


def _entry(item: pytest.Item, report: pytest.TestReport) -> dict[str, Any] | None:
    """The outcome of a test's phase as a results entry; ``None`` for a passing setup or teardown."""
    if report.when != "call" and not (report.failed or report.skipped):
        return None
    entry: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "seconds": round(report.duration, 1),
        "test": item.nodeid,
    }
    if report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        entry["outcome"] = "not-offered" if NOT_OFFERED in reason else "skipped"
        entry["detail"] = reason.removeprefix("Skipped: ")
    elif report.failed:
        entry["outcome"] = "fail"
        entry["detail"] = (report.longreprtext.strip().splitlines() or ["?"])[-1][:300]
    else:
        entry["outcome"] = "pass"
    return entry


def _keep(recorded: dict[str, dict[str, dict[str, Any]]], version: str, feature: str, entry: dict[str, Any]) -> None:
    previous = recorded.setdefault(version, {}).get(feature)
    if previous is None or previous["outcome"] == "pass":  # a failed phase is never overwritten by a later one
        recorded[version][feature] = entry


def record(item: pytest.Item, report: pytest.TestReport) -> None:
    """Note the outcome of a compat test's phase (a failed setup counts as a failed feature)."""
    marker = item.get_closest_marker("feature")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "compat_env" not in callspec.params:
        return
    entry = _entry(item, report)
    if entry is not None:
        _keep(_recorded, str(callspec.params["compat_env"]), str(marker.args[0]), entry)


def record_smoke(item: pytest.Item, report: pytest.TestReport, airflow_version: str) -> None:
    """Note the outcome of an end-to-end test marked ``smoke(<name>)`` for the Airflow version it ran on
    (every parameter of a test counts: one failing fails the smoke)."""
    marker = item.get_closest_marker("smoke")
    if marker is None:
        return
    entry = _entry(item, report)
    if entry is not None:
        _keep(_smoke, airflow_version, str(marker.args[0]), entry)


def record_suite(name: str, airflow_version: str, *, tests: int, failed: int, seconds: float) -> None:
    """Note the outcome of a whole suite (``unit``: every unit test passed) for an Airflow version."""
    entry: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "seconds": round(seconds, 1),
        "test": f"{tests} tests",
        "outcome": "fail" if failed else "pass",
    }
    if failed:
        entry["detail"] = f"{failed} of {tests} failed"
    _smoke.setdefault(airflow_version, {})[name] = entry


def write(path: Path) -> None:
    """Merge this session's outcomes into ``path`` (created if missing)."""
    if not _recorded and not _smoke:
        return
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data["format"] = 1
    data["features"] = dict(FEATURES)
    for section, recorded in (("versions", _recorded), ("airflow", _smoke)):
        versions = data.setdefault(section, {})
        for version, features in recorded.items():
            versions.setdefault(version, {}).update(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
