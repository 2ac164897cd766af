#!/usr/bin/env bash
# The whole test suite: lint, types, the documentation build (warnings are errors), the packaging check,
# unit tests and the end-to-end tests on real connectors and Airflow, then the compatibility runs (every EDC
# version of demo/edc_versions.py; the smoke selection on the other Airflow minors) and a check that the
# compatibility tables of docs/compatibility.md say what those runs found.
# Extra arguments go to the first two pytest runs (the unit tests, in two processes with pytest-xdist, each
# test file in one of them; then the end-to-end tests, one at a time: they share the connectors and ports).
# First the Debian packages the tests need (PostgreSQL, docker-compose, Chromium), installed when missing.
bash "$(dirname "$0")/_system_packages.sh"
source "$(dirname "$0")/_env.sh"
# The venvs of the other Airflow minors are filled meanwhile (mostly downloads), their output in a log.
MINORS=(3.1.8 3.2.2)
mkdir -p .work
( for airflow_version in "${MINORS[@]}"; do bash scripts/airflow_venv.sh "$airflow_version"; done ) >.work/minor-venvs.log 2>&1 &
minor_venvs=$!
.venv/bin/ruff check airflow_edc_callbacks tests dags demo benchmarks docs
.venv/bin/ruff format --check airflow_edc_callbacks tests dags demo benchmarks docs
.venv/bin/mypy
.venv/bin/lint-imports  # the import directions of the contract in pyproject.toml
.venv/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html  # the documentation site, warnings as errors
bash scripts/package_check.sh  # wheel and sdist built, checked, installed with Airflow: `airflow providers list`
rm -f .work/compat/results.json  # the tables are checked against this run alone
.venv/bin/pytest -n 2 --dist loadfile tests/unit "$@"
.venv/bin/pytest tests/e2e "$@"
.venv/bin/pytest -q tests/compat -m compat
wait "$minor_venvs" || { cat .work/minor-venvs.log >&2; echo "The venvs of Airflow ${MINORS[*]} could not be made" >&2; exit 1; }
for airflow_version in "${MINORS[@]}"; do  # the other Airflow minors: unit tests, then the end-to-end smoke
  ".venv-airflow-$airflow_version/bin/pytest" -q -n 2 --dist loadfile tests/unit
  bash scripts/e2e_smoke.sh "$airflow_version"
done
.venv/bin/python -m demo.compat_table --check
