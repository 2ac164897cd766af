"""Real servers: Airflow's api-server with the plugin (its access log). Every server binds 127.0.0.1 on a
port the OS picks; waits have deadlines."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope, wait_until

BIN = Path(sys.executable).parent
TOKEN = make_token(SIGNING_KEY, "corr-serve")
SIGNATURE = TOKEN.partition(".")[2]
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Server:
    """A server subprocess; its standard output and error are collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str], startup_timeout: float = 90) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        match = wait_until(
            lambda: RUNNING.search(self.output()) or self._exited(), startup_timeout, f"{argv[0]} to listen"
        )
        if not isinstance(match, re.Match):
            raise RuntimeError(f"{argv} exited: {self.output()}")
        self.port = int(match.group(1))

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self._lines.append(line)

    def _exited(self) -> bool:
        return self.process.poll() is not None

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return self.output()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY": SIGNING_KEY.decode(),
        "AIRFLOW__EDC_CALLBACKS__STORE_URL": f"sqlite:///{tmp_path / 'events.db'}",
    }


def test_api_server_access_log_shows_no_signature(tmp_path: Path) -> None:
    """Airflow's own api-server with the plugin: its access lines (HttpAccessLogMiddleware, a structlog
    logger reading the path from the ASGI scope) carry no token signature, and a trailing slash is a 404,
    not a redirect."""
    env = _env(tmp_path)
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr
    server = Server([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", "0"], env)
    try:
        prefix = "/edc-callbacks/callbacks"
        assert server.request("POST", f"{prefix}/{TOKEN}", envelope("TransferProcessStarted", "tp-api"))[0] == 200
        status, headers = server.request("POST", f"{prefix}/{TOKEN}/?sig=abc", envelope())
        assert status == 404
        assert "location" not in headers
        wait_until(lambda: server.output().count(f"path={prefix}/") >= 2, 20, "two access lines")
    finally:
        output = server.stop()
    assert SIGNATURE not in output
    assert f"path={prefix}/corr-serve.*** " in output
    assert f"path={prefix}/corr-serve.***/ " in output
