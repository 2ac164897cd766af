"""A small HTTP data server playing the provider's data source and the consumer's data sink.

Routes:

- ``GET /source/{name}``: deterministic JSON bytes for ``name`` (see :func:`source_bytes`).
- ``GET /source/broken``: always ``500``.
- ``GET /source/status/{code}``: always answers with that status code (failure-mode experiments).
- ``GET /source/slow/{seconds}``: waits that long (at most 600 s), then answers like ``/source/slow``
  (keeps a PUSH transfer in ``STARTED``, e.g. to test terminate/timeout paths).
- ``GET /source/random/{seconds}``: waits a uniformly random time up to that long, then answers like
  ``/source/slow`` (transfers of unknown length, for the end-to-end benchmark).
- ``POST|PUT /sink/{anything...}``: writes the body to a file under the sink directory and records it.
- ``POST|PUT /sink-fail/{anything...}``: a sink that answers ``500`` (records the attempt).
- ``GET /sink-status``: JSON list of everything that arrived at the sinks.
- ``GET /health``: ``{"status": "ok"}``.

Use it in-process with :func:`start_data_server` or as ``python -m demo.data_server --port P --sink-dir D``.
Only binds to 127.0.0.1. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["DataServerHandle", "main", "source_bytes", "start_data_server"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def source_bytes(name: str, size: int = 4096) -> bytes:
    """Return the deterministic payload served at ``/source/{name}``.

    A JSON document of roughly ``size`` bytes whose content depends only on ``name``, so a test can
    compare what arrived at the sink with ``source_bytes(name)``.
    """
    records: list[dict[str, Any]] = []
    i = 0
    body = b""
    while len(body) < size:
        digest = hashlib.sha256(f"{name}:{i}".encode()).hexdigest()
        records.append({"i": i, "name": name, "sha256": digest})
        i += 1
        body = json.dumps({"asset": name, "records": records}, separators=(",", ":")).encode()
    return body


@dataclass
class _State:
    sink_dir: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[dict[str, Any]] = field(default_factory=list)
    counter: int = 0


class _Handler(BaseHTTPRequestHandler):
    server_version = "demo-data-server/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> _State:
        state: _State = self.server.state  # type: ignore[attr-defined]
        return state

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj, indent=2).encode())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(n))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._json(200, {"status": "ok"})
        elif path == "/sink-status":
            with self.state.lock:
                self._json(200, list(self.state.received))
        elif path == "/source/broken":
            self._json(500, {"error": "broken source (demo)"})
        elif path.startswith("/source/status/"):
            try:
                code = int(path.rsplit("/", 1)[1])
            except ValueError:
                code = 400
            self._json(code, {"status": code})
        elif path.startswith("/source/random/"):
            try:
                longest = min(float(path.rsplit("/", 1)[1]), 600.0)
            except ValueError:
                longest = 5.0
            time.sleep(random.uniform(0.0, max(longest, 0.0)))
            self._send(200, source_bytes("slow"))
        elif path.startswith("/source/slow/"):
            try:
                seconds = min(float(path.rsplit("/", 1)[1]), 600.0)
            except ValueError:
                seconds = 5.0
            time.sleep(max(seconds, 0.0))
            self._send(200, source_bytes("slow"))
        elif path.startswith("/source/") and len(path) > len("/source/"):
            self._send(200, source_bytes(path[len("/source/") :]))
        else:
            self._json(404, {"error": "not found", "path": path})

    def _sink(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        failing = path.startswith("/sink-fail")
        if not (failing or path.startswith("/sink/") or path == "/sink"):
            self._json(404, {"error": "not found", "path": path})
            return
        with self.state.lock:
            self.state.counter += 1
            n = self.state.counter
            name = _SAFE.sub("_", path.strip("/")) or "sink"
            file = self.state.sink_dir / f"{n:04d}_{name}"
            if not failing:
                file.write_bytes(body)
            record = {
                "n": n,
                "method": self.command,
                "path": path,
                "file": None if failing else str(file),
                "size": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "content_type": self.headers.get("Content-Type"),
                "at": time.time(),
                "answered": 500 if failing else 200,
            }
            self.state.received.append(record)
        if failing:
            self._json(500, {"error": "failing sink (demo)"})
        else:
            self._json(200, {"stored": record["file"], "size": len(body)})

    do_POST = _sink
    do_PUT = _sink


@dataclass
class DataServerHandle:
    """A running data server. ``url`` is ``http://127.0.0.1:<port>``; call :meth:`stop` to shut down."""

    url: str
    port: int
    sink_dir: Path
    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def received(self) -> list[dict[str, Any]]:
        """Return a copy of the sink records (same content as ``GET /sink-status``)."""
        state: _State = self._server.state  # type: ignore[attr-defined]
        with state.lock:
            return list(state.received)

    def stop(self) -> None:
        """Stop serving and join the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DataServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_data_server(port: int, sink_dir: Path, verbose: bool = False) -> DataServerHandle:
    """Start the data server on ``127.0.0.1:port`` in a daemon thread (``port=0`` picks a free port)."""
    sink_dir = Path(sink_dir)
    sink_dir.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    server.state = _State(sink_dir=sink_dir)  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="demo-data-server", daemon=True)
    thread.start()
    real_port = server.server_address[1]
    return DataServerHandle(f"http://127.0.0.1:{real_port}", real_port, sink_dir, server, thread)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m demo.data_server --port P --sink-dir D``; runs until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--sink-dir", type=Path, required=True)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    handle = start_data_server(args.port, args.sink_dir, verbose=args.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"url": handle.url, "sink_dir": str(handle.sink_dir)}), flush=True)
    stop.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
