"""The receiver's answers to callbacks, and the one place they are counted in the metrics.

A callback is answered either with a :class:`CallbackOutcome` (200, see :func:`answered`) or by raising
:class:`CallbackRejected` from a route or one of its dependencies (answered by :func:`answer_rejected`,
which :func:`~airflow_edc_callbacks.receiver.app.create_app` installs as the exception handler).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from airflow_edc_callbacks import metrics


class CallbackOutcome(str, enum.Enum):
    """What became of a callback answered 200 (the answer's ``status``)."""

    STORED = "stored"
    """Committed to the store now."""
    DUPLICATE = "duplicate"
    """An event with this envelope id and the same body was stored already (an EDC re-delivery)."""
    IGNORED = "ignored"
    """About no transfer process or contract negotiation, through a dynamic token: not stored."""


class CallbackRejected(HTTPException):
    """A callback refused with ``status_code`` (4xx, or 503 for a store or registration fault).

    :param status_code: the HTTP status.
    :param detail: the answer's ``detail``: a sentence, or the validation errors (a list of objects).
    :param headers: extra response headers (``Retry-After``, ``Connection: close``).
    """

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)


def error_response(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"detail": detail}`` with ``status`` and ``headers`` (not counted: for answers other than callbacks)."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def answered(outcome: CallbackOutcome, envelope_id: str, then: BackgroundTask | None = None) -> JSONResponse:
    """The 200 answer ``{"status": outcome, "id": envelope_id}``, counted as accepted, duplicate or ignored.

    :param then: runs once the answer is sent (the callback's log line).
    """
    metrics.callback_answered(200, outcome.value)
    return JSONResponse({"status": outcome.value, "id": envelope_id}, background=then)


async def answer_rejected(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for :class:`CallbackRejected`: ``{"detail": ...}``, counted as conflict or rejection.

    :raises TypeError: ``exc`` is not a :class:`CallbackRejected` (the handler is registered for that class).
    """
    if not isinstance(exc, CallbackRejected):
        raise TypeError(f"answer_rejected handles CallbackRejected, not {type(exc).__name__}")
    metrics.callback_answered(exc.status_code)
    return error_response(exc.status_code, exc.detail, exc.headers)
