#!/usr/bin/env bash
# Runs every benchmark and writes benchmarks/results.md and benchmarks/results.png (about 15 minutes on
# 2 cores). Needs what the test suite needs (Debian's postgresql, Java 17 and Maven for the connectors of
# the end-to-end part), plus matplotlib (the [bench] extra). Uses the ports of the demo and the tests:
# run it alone.
source "$(dirname "$0")/../scripts/_env.sh"
venv_install .venv -e ".[test,bench]"
exec .venv/bin/python -m benchmarks.run "$@"
