#!/usr/bin/env bash
# Make .venv-airflow-<version>: exactly that Apache Airflow plus this package (editable) with its test extra.
#
#   scripts/airflow_venv.sh 3.1.8          # then: .venv-airflow-3.1.8/bin/pytest tests/unit -q
#
# Airflow's published constraints for the version and this Python are used when reachable
# (https://raw.githubusercontent.com/apache/airflow/constraints-<version>/constraints-<python>.txt); otherwise
# apache-airflow==<version> is pinned, pip resolves the rest within the few bounds of
# scripts/airflow_venv_fallback_constraints.txt (without which Airflow 3.2.2 does not start). Idempotent: a second run with the same
# pyproject.toml and Airflow version returns at once. PYTHON chooses the interpreter (default python3), VENV the
# directory (default .venv-airflow-<version>), e.g.
#   PYTHON=python3.12 VENV=.venv-airflow-3.3.2-py3.12 scripts/airflow_venv.sh 3.3.2
set -euo pipefail
if [ $# -ne 1 ] || [[ ! "$1" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "usage: $0 <airflow-version, e.g. 3.1.8>" >&2
  exit 2
fi
VERSION="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv-airflow-$VERSION}"
STAMP="$VENV/.airflow-edc-callbacks-installed"
FALLBACK="scripts/airflow_venv_fallback_constraints.txt"
WANT="airflow=$VERSION python=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])') inputs=$(cat pyproject.toml "$FALLBACK" | sha256sum | cut -c1-16)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
  && "$VENV/bin/python" -c "import airflow, sys; sys.exit(airflow.__version__ != '$VERSION')" 2>/dev/null; then
  echo "$VENV is up to date (Airflow $VERSION)" >&2
  exit 0
fi

if [ -x "$VENV/bin/python" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')" != \
  "$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')" ]; then
  echo "$VENV was made with another Python; making it again" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating $VENV with $("$PYTHON" --version)..." >&2
  "$PYTHON" -m venv "$VENV"
fi
PY_MINOR="$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
CONSTRAINTS_URL="https://raw.githubusercontent.com/apache/airflow/constraints-$VERSION/constraints-$PY_MINOR.txt"
CONSTRAINTS=()
if curl -fsS --max-time 20 -o "$VENV/constraints.txt" "$CONSTRAINTS_URL" 2>/dev/null; then
  echo "Using Airflow's constraints $CONSTRAINTS_URL" >&2
  CONSTRAINTS=(--constraint "$VENV/constraints.txt")
else
  rm -f "$VENV/constraints.txt"
  echo "Airflow's constraints are not reachable ($CONSTRAINTS_URL); pinning apache-airflow==$VERSION" \
    "with the bounds of $FALLBACK" >&2
  CONSTRAINTS=(--constraint "$FALLBACK")
fi

echo "Installing apache-airflow==$VERSION and airflow-edc-callbacks[test] into $VENV (about a minute the first time)..." >&2
source "$ROOT/scripts/_install.sh"
# The constraints pin Airflow's dependencies (and the test tools they list); the rest resolves freely.
venv_install "$VENV" "${CONSTRAINTS[@]}" "apache-airflow==$VERSION" -e ".[test]"
"$VENV/bin/python" -c "import airflow, sys; sys.exit(airflow.__version__ != '$VERSION')" \
  || { echo "$VENV does not hold Airflow $VERSION" >&2; exit 1; }
echo "$WANT" >"$STAMP"
echo "$VENV ready (Airflow $VERSION)" >&2
