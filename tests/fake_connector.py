"""A FAKE consumer Management API for the operators' unit tests (the real connectors run in tests/e2e)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeConnector:
    """A FAKE consumer Management API on 127.0.0.1: ``GET .../transferprocesses/{id}`` (and ``.../state``)
    and ``.../contractnegotiations/{id}`` answer ``states[id]``; ``POST .../{id}/terminate`` answers
    ``terminate_status`` (204 sets the state ``TERMINATED``, as EDC does soon after); ``POST
    .../transferprocesses`` starts ``new_id`` and ``POST .../contractnegotiations`` starts
    ``new_negotiation_id`` (state ``REQUESTED``), calling ``on_start(body)`` first when set (what the
    connector does before it answers, e.g. send a callback). ``requests`` records ``(monotonic time,
    method, path, body)``."""

    new_id: str = "tp-lifecycle"
    new_negotiation_id: str = "cn-lifecycle"
    states: dict[str, str] = field(default_factory=dict)
    terminate_status: int = 204
    requests: list[tuple[float, str, str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    on_start: Callable[[Any], None] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/management"

    def calls(self, method: str, suffix: str = "") -> list[tuple[float, str, str, Any]]:
        return [r for r in list(self.requests) if r[1] == method and r[2].endswith(suffix)]

    def start(self) -> FakeConnector:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, code: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.requests.append((time.monotonic(), "GET", self.path, None))
                segments = self.path.rstrip("/").split("/")
                state_only = segments[-1] == "state"  # GET .../transferprocesses/{id}/state
                process_id = segments[-2] if state_only else segments[-1]
                if process_id not in fake.states:
                    self._answer(404, [{"message": f"Object {process_id} not found", "type": "ObjectNotFound"}])
                    return
                if state_only:
                    self._answer(200, {"@type": "TransferState", "state": fake.states[process_id]})
                    return
                self._answer(200, {"@id": process_id, "state": fake.states[process_id], "type": "CONSUMER"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((time.monotonic(), "POST", self.path, body))
                started = {"/transferprocesses": fake.new_id, "/contractnegotiations": fake.new_negotiation_id}
                for suffix, new_id in started.items():
                    if self.path.endswith(suffix):
                        fake.states[new_id] = "REQUESTED"
                        if fake.on_start is not None:
                            fake.on_start(body)
                        self._answer(200, {"@type": "IdResponse", "@id": new_id})
                        return
                if not self.path.endswith("/terminate"):
                    self._answer(404, [{"message": "not served by the fake", "type": "NotFound"}])
                    return
                process_id = self.path.rsplit("/", 2)[-2]
                if fake.terminate_status < 300:
                    fake.states[process_id] = "TERMINATED"
                    self._answer(fake.terminate_status)
                else:
                    state = fake.states.get(process_id)
                    message = f"Could not execute TerminateCommand on ID [{process_id}] because it's {state}"
                    self._answer(fake.terminate_status, [{"message": message, "type": "ObjectConflict"}])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
