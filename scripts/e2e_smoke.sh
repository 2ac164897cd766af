#!/usr/bin/env bash
# End-to-end smoke on another Airflow version (the e2e tests marked smoke): a PUSH transfer DAG, the sensor DAG
# and the full pipeline (contract negotiation, PUSH and PULL) on real EDC connectors and a real `airflow standalone` of that version.
#
#   scripts/e2e_smoke.sh 3.1.8 [extra pytest args]
#
# The Airflow components run from .venv-airflow-<version> (made by scripts/airflow_venv.sh); the tests run in
# .venv and talk to that Airflow over its REST API (EDC_E2E_AIRFLOW_VENV, see demo/airflow_env.py). Uses the
# fixed ports of tests/e2e: run one end-to-end session at a time on a machine.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 <airflow-version, e.g. 3.1.8> [pytest args]" >&2
  exit 2
fi
VERSION="$1"
shift
source "$(dirname "$0")/_env.sh"
scripts/airflow_venv.sh "$VERSION"
export EDC_E2E_AIRFLOW_VENV="$ROOT/.venv-airflow-$VERSION"
exec .venv/bin/pytest -q -m smoke tests/e2e "$@"  # the tests marked smoke(<name>); results: .work/compat/results.json
