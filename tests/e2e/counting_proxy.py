"""A counting reverse proxy: in front of the consumer's Management API, or balancing over several receivers.

It forwards every request unchanged and records ``(monotonic time, method, path)``, so a test can show
that no request for a transfer's state reached the connector while its task was deferred. Given several
upstreams it takes them in turn (round robin), as a load balancer in front of api-server replicas would,
and records which upstream got which path.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class CountingProxy:
    """Listens on ``127.0.0.1:port`` and forwards to ``upstream`` (one base URL, or several in turn).

    ``requests`` lists what passed; ``forwarded`` maps each upstream to ``(path, request body, status)`` of
    each request it answered (502 when the upstream failed to answer; ``failures`` says how).
    """

    upstream: str | Sequence[str]
    port: int
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    forwarded: dict[str, list[tuple[str, bytes, int]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_for(self, text: str) -> list[tuple[float, str, str]]:
        """Requests whose path contains ``text`` (for example a transfer process id)."""
        with self._lock:
            return [r for r in self.requests if text in r[2]]

    def start(self) -> CountingProxy:
        proxy = self
        upstreams = [self.upstream] if isinstance(self.upstream, str) else list(self.upstream)
        self.forwarded = {url: [] for url in upstreams}
        client = self._client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=200))
        turns = itertools.cycle(upstreams)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.requests.append((time.monotonic(), self.command, self.path))
                    target = next(turns)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    upstream = client.request(self.command, target + self.path, content=body, headers=headers)
                except httpx.HTTPError as err:  # recorded as 502, so a test names a request the upstream lost
                    with proxy._lock:
                        proxy.forwarded[target].append((self.path, body or b"", 502))
                        proxy.failures.append(f"{self.command} {target}{self.path}: {err!r}")
                    self.send_error(502, f"upstream failed: {type(err).__name__}")
                    return
                with proxy._lock:
                    proxy.forwarded[target].append((self.path, body or b"", upstream.status_code))
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP | {"content-encoding"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._client is not None:
            self._client.close()
