#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and the end-to-end tests on real connectors and Airflow.
source "$(dirname "$0")/_env.sh"
.venv/bin/ruff check airflow_edc_callbacks tests dags demo benchmarks
.venv/bin/ruff format --check airflow_edc_callbacks tests dags demo benchmarks
.venv/bin/mypy
exec .venv/bin/pytest "$@"
