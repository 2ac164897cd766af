#!/usr/bin/env bash
# Runs every benchmark and writes benchmarks/results.md and benchmarks/results.png (about 10 minutes on
# 2 cores). Needs what the test suite needs (Debian's postgresql), plus matplotlib (the [bench] extra).
source "$(dirname "$0")/../scripts/_env.sh"
.venv/bin/python -m pip install --quiet -e ".[test,bench]"
exec .venv/bin/python -m benchmarks.run "$@"
