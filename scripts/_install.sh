# Sourced by the scripts that fill a virtual environment:
#   venv_install <venv> <pip install arguments...>
# installs into <venv> with uv's pip interface (uv from PyPI, into that venv), which installs Airflow's
# ~250 packages in seconds where pip takes minutes. Same arguments and resolution rules as pip install
# (requirements, -e, --constraint); uv's cache is ~/.cache/uv.
venv_install() {
  local venv="$1"
  shift
  [ -x "$venv/bin/uv" ] || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
  "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "$@"
}
