"""``python -m demo env``: the exports point ``airflow-edc-callbacks`` at the demo (its receiver on the demo's
api-server port, its own signing key, its store); the demo itself runs in tests/e2e and scripts/demo.sh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from airflow_edc_callbacks.tokens import verify_token
from tests.helpers import REPO


def _in_demo_shell(workdir: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a shell that evaluated ``python -m demo env`` (as the demo tells its user to)."""
    script = f'eval "$({sys.executable} -m demo env --workdir {workdir} --airflow-port 28080)" && {command}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)


def test_callback_url_on_the_demo_is_its_receiver_signed_with_its_key(tmp_path: Path) -> None:
    printed = _in_demo_shell(tmp_path, "airflow-edc-callbacks callback-url --correlation-id demo-check").stdout
    prefix = "http://127.0.0.1:28080/edc-callbacks/callbacks/"
    assert printed.startswith(prefix)
    key = (tmp_path / "callback_signing.key").read_text().strip().encode()
    assert verify_token(key, printed.strip()[len(prefix) :]) == "demo-check"


def test_doctor_on_the_demo_finds_its_settings(tmp_path: Path) -> None:
    """Without the demo running: its store does not exist yet and nothing answers, but the signing key and
    callback_base_url are the demo's own (so its task logs show no generated-key or fallback warning)."""
    done = _in_demo_shell(tmp_path, "airflow-edc-callbacks doctor --json --no-self-test || true")
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["signing key"]["status"] == "ok"
    assert checks["callback_base_url"] == {
        "name": "callback_base_url",
        "status": "ok",
        "message": "set: http://127.0.0.1:28080/edc-callbacks",
        "fix": "",
    }
    assert checks["store"]["message"].startswith(f"sqlite:///{tmp_path / 'airflow' / 'edc_callbacks.db'}: ")
    assert checks["connection edc_default"]["message"].startswith(
        "Management API v3 at http://127.0.0.1:29193/management"
    )
