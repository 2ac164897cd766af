#!/usr/bin/env bash
# The Debian packages the test suite needs, installed when missing (apt-get as root, through sudo otherwise):
# - postgresql: the PostgreSQL store tests start a throwaway cluster of their own on 127.0.0.1 (no service
#   needs to run; only initdb/postgres binaries are used);
# - docker-compose: validates docker-compose.yaml (no Docker engine is needed for that);
# - chromium, chromium-driver: the browser test of the task timeline view (headless Chromium, /usr/bin/chromium);
# - python3-venv: the virtual environments the scripts create.
# Called first by scripts/test.sh (and so by .ci/run). Prints nothing when everything is there.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
"${PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
[ "${#missing[@]}" -eq 0 ] && exit 0
echo "Installing Debian packages the tests need: ${missing[*]}..." >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  echo "Not root and no sudo: install these Debian packages first: ${missing[*]}" >&2
  exit 1
fi
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
