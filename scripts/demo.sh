#!/usr/bin/env bash
# The main job end to end: two real EDC connectors, `airflow standalone` with this provider, and the
# full pipeline DAG (negotiation, PUSH, PULL with the data fetched by its EDR) run to success. Prints how
# each step ended and checks the data against the provider's source.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python -m demo "$@"
