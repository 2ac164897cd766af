"""A provider that acknowledges a transfer request and then never answers again (a SIMULATED provider).

The field case (sovity/edc-ce#688, eclipse-edc/Connector#5139): the provider took the request, then found
no data plane for the transfer type (or failed otherwise) and its termination message never reached the
consumer, which stays ``REQUESTED`` for good. The real provider connector of the tests always answers, so
this stands in for the provider's DSP endpoint only; the consumer connector is the real one.

What it answers (DSP 2025-1, as EDC 0.15.1 sends and reads it):

- ``POST .../transfers/request``: ``201`` with a ``TransferProcess`` ack (``consumerPid`` from the request,
  a new ``providerPid``, state ``REQUESTED``), then nothing: no ``TransferStartMessage`` ever comes.
- ``POST .../transfers/{providerPid}/termination``: ``200`` (so a consumer's terminate ends quickly:
  EDC's ``TransferProcessManagerImpl.processTerminating`` sends this message before ``TERMINATED``).
- anything else: ``404``.

``requests`` records ``(method, path)`` of what came.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DSP_CONTEXT_2025_1 = "https://w3id.org/dspace/2025/1/context.jsonld"


def _consumer_pid(body: Any) -> str | None:
    """The ``consumerPid`` of a compacted or expanded DSP message."""
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return None
    for key, value in body.items():
        if key.endswith("consumerPid"):
            while isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, dict):
                value = value.get("@value") or value.get("@id")
            return str(value) if value else None
    return None


@dataclass
class SilentProvider:
    """Listens on ``127.0.0.1:port``; its DSP address is :attr:`dsp_address`."""

    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dsp_address(self) -> str:
        return f"http://localhost:{self.port}/protocol/2025-1"

    def start(self) -> SilentProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, code: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with provider._lock:
                    provider.requests.append(("POST", self.path))
                if self.path.endswith("/transfers/request"):
                    try:
                        consumer_pid = _consumer_pid(json.loads(raw or b"{}"))
                    except ValueError:
                        consumer_pid = None
                    if not consumer_pid:
                        self._answer(400, {"error": "no consumerPid"})
                        return
                    self._answer(
                        201,
                        {
                            "@context": [DSP_CONTEXT_2025_1],
                            "@type": "TransferProcess",
                            "providerPid": f"urn:uuid:{uuid.uuid4()}",
                            "consumerPid": consumer_pid,
                            "state": "REQUESTED",
                        },
                    )
                elif self.path.endswith("/termination"):
                    self._answer(200)
                else:
                    self._answer(404, {"error": "not served by the silent provider"})

            def do_GET(self) -> None:
                with provider._lock:
                    provider.requests.append(("GET", self.path))
                self._answer(404, {"error": "not served by the silent provider"})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="silent-provider", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
