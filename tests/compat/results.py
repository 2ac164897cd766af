"""The compatibility results file: version x feature -> outcome, merged across runs.

Format (``.work/compat/results.json``)::

    {
      "format": 1,
      "features": {"push": "HttpData-PUSH transfer ...", ...},      # demo.edc_versions.FEATURES
      "versions": {
        "0.13.0": {
          "push": {"outcome": "pass", "date": "2026-11-30", "seconds": 41.2, "test": "<pytest node id>"},
          "edr_cache_api": {"outcome": "not-offered", ...},
          ...
        }
      }
    }

``outcome`` is ``pass``, ``fail`` (``detail`` then holds the first line of the error) or ``not-offered``
(the version's row in ``demo/edc_versions.py`` does not list the feature). A later run of the same
version and feature replaces the earlier entry; other entries are kept, so versions can run separately.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from demo.edc_versions import FEATURES

NOT_OFFERED = "not offered"
"""Reason prefix of ``pytest.skip`` for a feature the version does not offer."""

_recorded: dict[str, dict[str, dict[str, Any]]] = {}


def record(item: pytest.Item, report: pytest.TestReport) -> None:
    """Note the outcome of a compat test's phase (a failed setup counts as a failed feature)."""
    marker = item.get_closest_marker("feature")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "compat_env" not in callspec.params:
        return
    if report.when != "call" and not (report.failed or report.skipped):
        return
    version = str(callspec.params["compat_env"])
    feature = str(marker.args[0])
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
    previous = _recorded.setdefault(version, {}).get(feature)
    if previous is None or previous["outcome"] == "pass":  # a failed phase is never overwritten by a later one
        _recorded[version][feature] = entry


def write(path: Path) -> None:
    """Merge this session's outcomes into ``path`` (created if missing)."""
    if not _recorded:
        return
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data["format"] = 1
    data["features"] = dict(FEATURES)
    versions = data.setdefault("versions", {})
    for version, features in _recorded.items():
        versions.setdefault(version, {}).update(features)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
