"""The standalone receiver server of ``airflow-edc-callbacks serve``: uvicorn with connection limits.

uvicorn (0.3x to 0.54) has a keep-alive timeout, a cap on the size of an incomplete request
(``h11_max_incomplete_event_size``, h11 only), ``limit_concurrency`` (answer 503 while that many
connections or requests are open) and ``backlog``, but no deadline for a request's headers: its keep-alive
timer only runs between requests and any byte received cancels it, so a client that trickles header bytes
(slowloris), or connects and sends nothing, holds its connection forever. :func:`build_server` therefore
runs uvicorn's h11 protocol with such a deadline added (:func:`header_timeout_protocol`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_edc_callbacks.redaction import install_access_log_filter


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits of the standalone server.

    :ivar keep_alive_timeout: seconds an idle keep-alive connection is kept open after a response.
    :ivar header_timeout: seconds a connection may take to send a request's line and headers, counted from
        the connection (or the previous response); then it is closed. 0: no deadline.
    :ivar max_header_bytes: the largest request line plus headers held while incomplete, in bytes; a
        larger request is answered 400 and closed (uvicorn's ``h11_max_incomplete_event_size``).
    :ivar limit_concurrency: while this many connections (or requests in progress) are open, a new
        request is answered 503 at once; ``None``: no limit.
    :ivar backlog: connections the kernel queues before they are accepted (``listen()`` backlog).
    """

    keep_alive_timeout: int = 5
    header_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    limit_concurrency: int | None = 200
    backlog: int = 2048


class _HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive in time."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete: it is being handled
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        if not self.transport.is_closing():
            self._arm_header_deadline()  # for the next request on this connection
        super().on_response_complete()
        if self.cycle is not cycle:  # a pipelined request was complete already
            self._cancel_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        if self.header_timeout > 0:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being handled; the receiver bounds its body itself
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            self.logger.info("%sNo complete request within %g s: closing the connection", client, self.header_timeout)
            self.transport.close()


def header_timeout_protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 HTTP protocol class with a deadline for request headers (pass it as uvicorn's ``http``).

    :param header_timeout: seconds from the connection (or the previous response on it) until the next
        request's line and headers must be complete; then the connection is closed. 0: no deadline.
    :raises ValueError: ``header_timeout`` is negative.
    """
    if header_timeout < 0:
        raise ValueError(f"header timeout must not be negative, got {header_timeout}")
    return type("HeaderDeadlineH11Protocol", (_HeaderDeadlineH11Protocol,), {"header_timeout": float(header_timeout)})


def build_server(app: Any, *, host: str, port: int, limits: ServerLimits, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app`` with ``limits`` and the access log redacted.

    Uses the h11 protocol (where the header size cap and the header deadline apply) and no WebSockets.
    Configures uvicorn's logging (as ``uvicorn.run`` does: its access lines on standard output, the rest on
    standard error) and adds :class:`~airflow_edc_callbacks.redaction.AccessLogRedactionFilter` to its
    access logger.

    :param host: interface to bind.
    :param port: TCP port; 0 picks a free one (uvicorn logs which).
    :raises ValueError: a limit is negative or zero where it must be positive.
    """
    if limits.keep_alive_timeout < 0 or limits.max_header_bytes <= 0 or limits.backlog <= 0:
        raise ValueError("keep-alive timeout, max header bytes and backlog must be positive")
    if limits.limit_concurrency is not None and limits.limit_concurrency <= 0:
        raise ValueError("limit concurrency must be positive")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=header_timeout_protocol(limits.header_timeout),
        ws="none",
        timeout_keep_alive=limits.keep_alive_timeout,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        limit_concurrency=limits.limit_concurrency,
        backlog=limits.backlog,
    )
    # uvicorn.Config configured logging; Airflow's logging configuration, applied when Airflow was imported,
    # left "uvicorn.error" not propagating, and uvicorn's leaves that as it is: it would log nothing
    error_log = logging.getLogger("uvicorn.error")
    if not error_log.handlers:
        error_log.propagate = True
    install_access_log_filter()
    return uvicorn.Server(config)
