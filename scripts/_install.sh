# Sourced by the scripts that fill a virtual environment:
#   venv_install <venv> <pip install arguments...>
# installs into <venv> with uv's pip interface (uv from PyPI, into that venv), which installs Airflow's
# ~250 packages in seconds where pip takes minutes. Same arguments and resolution rules as pip install
# (requirements, -e, --constraint); uv's cache is ~/.cache/uv. uv reads no pip configuration: the index,
# find-links and CA bundle set for pip in the environment are handed on; should uv not install or fail,
# pip does the installation.
venv_install() {
  local venv="$1"
  shift
  if [ -x "$venv/bin/uv" ] || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"; then
    if (
      [ -n "${PIP_INDEX_URL:-}" ] && export UV_INDEX_URL="${UV_INDEX_URL:-$PIP_INDEX_URL}"
      [ -n "${PIP_EXTRA_INDEX_URL:-}" ] && export UV_EXTRA_INDEX_URL="${UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}"
      [ -n "${PIP_FIND_LINKS:-}" ] && export UV_FIND_LINKS="${UV_FIND_LINKS:-$PIP_FIND_LINKS}"
      [ -n "${PIP_CERT:-}" ] && export SSL_CERT_FILE="${SSL_CERT_FILE:-$PIP_CERT}"
      "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "$@"
    ); then
      return 0
    fi
    echo "uv could not install into $venv; installing with pip" >&2
  fi
  "$venv/bin/python" -m pip install --quiet "$@"
}
