# Sourced by demo.sh and test.sh: a virtual environment in .venv with this package installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $("$PYTHON" --version)..." >&2
  "$PYTHON" -m venv .venv
fi
echo "Installing airflow-edc-callbacks and its dependencies into .venv (about a minute the first time)..." >&2
# The Airflow the demo and the main test run use, pinned so that a new Airflow release changes nothing here
# until it is listed (scripts/test.sh runs the other supported minors in venvs of their own).
AIRFLOW_VERSION=3.3.2
source "$ROOT/scripts/_install.sh"
venv_install .venv -e ".[test,docs]" "apache-airflow==$AIRFLOW_VERSION"
export PATH="$ROOT/.venv/bin:$PATH"
for tool in java mvn; do
  command -v "$tool" >/dev/null || { echo "$tool is required (Java 17 and Maven assemble the EDC connectors)" >&2; exit 1; }
done
