#!/usr/bin/env bash
# Packaging: build the wheel and the sdist (`python -m build`), check their metadata (`twine check`) and
# contents (py.typed, the Alembic migrations, the provider and plugin entry points; no tests, .git or
# .work), install the wheel into a fresh venv with Airflow and check that `airflow providers list` lists
# the provider with its version. Run by scripts/test.sh; needs .venv (scripts/_env.sh). uv installs it
# (scripts/_install.sh), resolved against .venv's versions (a constraints file): about half a minute.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.3.2}"
work="$(mktemp -d "${TMPDIR:-/tmp}/edc-package-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "Package check: building the wheel and the sdist..." >&2
.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
.venv/bin/python -m twine check --strict "$work"/dist/*
.venv/bin/python - "$work/dist" <<'PY'
"""The wheel and the sdist hold what an installation needs, and nothing of the repository's workings."""
import sys
import tarfile
import zipfile
from pathlib import Path

dist = Path(sys.argv[1])
(wheel,) = dist.glob("*.whl")
(sdist,) = dist.glob("*.tar.gz")
in_wheel = zipfile.ZipFile(wheel).namelist()
with tarfile.open(sdist) as tar:
    root = tar.getnames()[0].split("/")[0]
    in_sdist = [name.removeprefix(f"{root}/") for name in tar.getnames()]
needed = [
    "airflow_edc_callbacks/py.typed",
    "airflow_edc_callbacks/get_provider_info.py",
    "airflow_edc_callbacks/store/migrations/env.py",
    "airflow_edc_callbacks/store/migrations/script.py.mako",
    "airflow_edc_callbacks/store/migrations/versions/0001_initial.py",
    "airflow_edc_callbacks/lineage/lineage-facets.json",  # the OpenLineage run facet's schema
]
problems = [f"{wheel.name} lacks {n}" for n in needed if n not in in_wheel]
problems += [f"{sdist.name} lacks {n}" for n in [*needed, "pyproject.toml", "README.md"] if n not in in_sdist]
for archive, names in ((wheel.name, in_wheel), (sdist.name, in_sdist)):
    for name in names:
        parts = name.split("/")
        if parts[0] in ("tests", ".git", ".work", ".venv", "demo", "benchmarks") or "__pycache__" in parts:
            problems.append(f"{archive} holds {name}")
entry_points = next(n for n in in_wheel if n.endswith(".dist-info/entry_points.txt"))
text = zipfile.ZipFile(wheel).read(entry_points).decode()
for wanted in (
    "[apache_airflow_provider]",
    "provider_info = airflow_edc_callbacks.get_provider_info:get_provider_info",
    "[airflow.plugins]",
    "edc_callbacks = airflow_edc_callbacks.plugin:EdcCallbacksPlugin",
    "airflow-edc-callbacks = airflow_edc_callbacks.cli:main",
):
    if wanted not in text:
        problems.append(f"{wheel.name}: entry_points.txt lacks {wanted!r}")
if problems:
    sys.exit("Package check failed:\n  " + "\n  ".join(problems))
print(f"Package check: {wheel.name} ({len(in_wheel)} files) and {sdist.name} ({len(in_sdist)} files) hold what they should")
PY

echo "Package check: installing the wheel with apache-airflow==$AIRFLOW_VERSION into a fresh venv..." >&2
.venv/bin/python -m pip freeze --exclude-editable | grep -v '^airflow-edc-callbacks' >"$work/constraints.txt"
"${PYTHON:-python3}" -m venv "$work/venv"
source "$ROOT/scripts/_install.sh"
venv_install "$work/venv" --constraint "$work/constraints.txt" "$work"/dist/*.whl "apache-airflow==$AIRFLOW_VERSION"
AIRFLOW_HOME="$work/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False \
  "$work/venv/bin/airflow" providers list -o json >"$work/providers.json" 2>"$work/providers.log" \
  || { cat "$work/providers.log" >&2; exit 1; }
version="$(.venv/bin/python -c 'import airflow_edc_callbacks; print(airflow_edc_callbacks.__version__)')"
.venv/bin/python - "$work/providers.json" "$version" <<'PY'
import json
import sys

listed = {p["package_name"]: p["version"] for p in json.load(open(sys.argv[1]))}
found = listed.get("airflow-edc-callbacks")
if found != sys.argv[2]:
    sys.exit(f"Package check failed: airflow providers list shows airflow-edc-callbacks {found!r}, not {sys.argv[2]}")
print(f"Package check: the installed wheel is listed by `airflow providers list` as airflow-edc-callbacks {found}")
PY
