#!/usr/bin/env bash
# The main job end to end: two real EDC connectors, `airflow standalone` with this provider, and the
# example PUSH DAG run to success. Prints the DAG run's result and where the data landed.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python -m demo "$@"
