"""Real servers: ``airflow-edc-callbacks serve`` (its limits, its access log) and Airflow's api-server with the
plugin (its access log). Every server binds 127.0.0.1 on a port the OS picks; waits have deadlines."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_edc_callbacks.tokens import make_token
from tests.airflow_compat import api_server_access_line
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


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``airflow-edc-callbacks serve --port 0`` with extra flags; stopped at teardown."""
    started: list[Server] = []

    def start(*flags: str) -> Server:
        argv = [str(BIN / "airflow-edc-callbacks"), "serve", "--host", "127.0.0.1", "--port", "0", *flags]
        server = Server(argv, _env(tmp_path))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _post_head(path: str, content_length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def _status_line(sock: socket.socket) -> bytes:
    """The first line the server sent (b"" if it closed the connection without an answer)."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` seconds (answers read on the way are dropped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if readable:
            try:
                if not sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
    return False


def test_serve_access_log_shows_no_signature(serve: Callable[..., Server]) -> None:
    server = serve("--backlog", "64", "--limit-concurrency", "32")
    assert server.request("POST", f"/callbacks/{TOKEN}", envelope("TransferProcessStarted", "tp-log"))[0] == 200
    assert server.request("POST", f"/callbacks/{TOKEN}?sig=SIGVALUEQ7&token=TOKVALUEQ8", envelope())[0] == 200
    assert server.request("POST", f"/callbacks/corr-serve.forged{SIGNATURE}", envelope())[0] == 404
    assert server.request("GET", "/health")[0] == 200
    wait_until(lambda: server.output().count('"POST /callbacks/') == 3, 10, "three access lines")
    output = server.stop()
    assert SIGNATURE not in output
    assert "SIGVALUEQ7" not in output  # values no random envelope id or path can hold (hex, lower case)
    assert "TOKVALUEQ8" not in output
    assert '"POST /callbacks/corr-serve.*** HTTP/1.1" 200' in output
    assert '"POST /callbacks/corr-serve.***?sig=***&token=*** HTTP/1.1" 200' in output
    assert "limit concurrency 32, backlog 64" in output


def test_serve_answers_503_beyond_limit_concurrency(serve: Callable[..., Server]) -> None:
    limit, extra = 3, 3
    server = serve("--limit-concurrency", str(limit), "--body-timeout", "120", "--header-timeout", "120")
    slow: list[socket.socket] = []
    try:
        for _ in range(limit + extra):  # each sends its headers and one byte of a 100-byte body, then stalls
            sock = server.connect()
            sock.sendall(_post_head(f"/callbacks/{TOKEN}", 100) + b"{")
            slow.append(sock)
        rejected: set[int] = set()

        def enough_rejected() -> bool:
            for index, sock in enumerate(slow):
                if index not in rejected and select.select([sock], [], [], 0)[0]:
                    assert _status_line(sock).startswith(b"HTTP/1.1 503")
                    rejected.add(index)
            return len(rejected) >= extra

        wait_until(enough_rejected, 10, f"{extra} of {limit + extra} slow connections to be answered 503")
        assert limit + extra - len(rejected) <= limit  # no more than `limit` are held

        started = time.monotonic()
        assert server.request("POST", f"/callbacks/{TOKEN}", envelope())[0] == 503
        assert time.monotonic() - started < 5
    finally:
        for sock in slow:
            sock.close()
    wait_until(lambda: server.request("POST", f"/callbacks/{TOKEN}", envelope())[0] == 200, 20, "capacity to come back")
    assert "Exception in ASGI application" not in server.stop()  # the slow clients that left are no errors


def test_serve_answers_408_to_a_slow_body(serve: Callable[..., Server]) -> None:
    server = serve("--body-timeout", "1", "--header-timeout", "60")
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(_post_head(f"/callbacks/{TOKEN}", 200) + b'{"id": "slow", ')
        sock.settimeout(15)
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        elapsed = time.monotonic() - started
        assert response.status == 408
        assert response.getheader("connection") == "close"
        assert 0.9 <= elapsed < 10
        response.read()
        assert _closed_by_server(sock, 10)
    assert server.request("POST", f"/callbacks/{TOKEN}", envelope())[0] == 200


def test_serve_cuts_slow_and_idle_header_senders(serve: Callable[..., Server]) -> None:
    server = serve("--header-timeout", "1", "--keep-alive-timeout", "30")
    with server.connect() as idle:
        started = time.monotonic()
        assert _closed_by_server(idle, 10)
        assert time.monotonic() - started >= 0.9

    with server.connect() as slowloris:
        started = time.monotonic()
        slowloris.sendall(b"POST /callbacks/x HTTP/1.1\r\nHost: test\r\n")
        cut = False
        while not cut and time.monotonic() - started < 10:  # one more header byte every 0.1 s
            try:
                slowloris.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            cut = _closed_by_server(slowloris, 0.1)
        assert cut
        assert 0.9 <= time.monotonic() - started < 10


def test_serve_limits_header_size(serve: Callable[..., Server]) -> None:
    server = serve("--max-header-bytes", "4096")
    with server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 8000)  # never complete
        assert _status_line(sock).startswith(b"HTTP/1.1 400")
    assert server.request("GET", "/health")[0] == 200


def test_serve_keep_alive_timeout(serve: Callable[..., Server]) -> None:
    server = serve("--keep-alive-timeout", "1", "--header-timeout", "60")
    with server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        response.read()
        assert response.status == 200
        started = time.monotonic()
        assert _closed_by_server(sock, 10)
        assert time.monotonic() - started < 4  # uvicorn's default is 5 s


def test_api_server_access_log_shows_no_signature(tmp_path: Path, migrated_airflow_db: Callable[[Path], Path]) -> None:
    """Airflow's own api-server with the plugin: its access lines (HttpAccessLogMiddleware, a structlog
    logger reading the path from the ASGI scope) carry no token signature, and a trailing slash is a 404,
    not a redirect."""
    env = _env(tmp_path)
    migrated_airflow_db(Path(env["AIRFLOW_HOME"]))
    server = Server([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", "0"], env)
    try:
        prefix = "/edc-callbacks/callbacks"
        assert server.request("POST", f"{prefix}/{TOKEN}", envelope("TransferProcessStarted", "tp-api"))[0] == 200
        status, headers = server.request("POST", f"{prefix}/{TOKEN}/?sig=abc", envelope())
        assert status == 404
        assert "location" not in headers
        lines = [
            api_server_access_line("POST", f"{prefix}/corr-serve.***"),
            api_server_access_line("POST", f"{prefix}/corr-serve.***/", "sig=***"),
        ]
        wait_until(lambda: all(line in server.output() for line in lines), 20, "two access lines")
    finally:
        output = server.stop()
    assert SIGNATURE not in output
    assert all(line in output for line in lines)
