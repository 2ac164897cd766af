"""Reading and validating a callback's body: the content type, the size and time limits, the JSON input
domain and the EDC event envelope model."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from airflow_edc_callbacks.models import EventEnvelope, check_json_value
from airflow_edc_callbacks.receiver.responses import CallbackRejected

_PARSE_IN_THREAD_BYTES = 64 * 1024
"""Bodies larger than this are parsed and checked in a worker thread, off the event loop."""


@dataclass(frozen=True)
class ReceivedEvent:
    """A callback's body, validated.

    :ivar envelope: the EDC event envelope model.
    :ivar body: the JSON object as received (what the store keeps).
    """

    envelope: EventEnvelope
    body: dict[str, Any]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether ``content_type`` is ``application/json`` or ``application/*+json`` (parameters ignored)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_body(request: Request, limit: int, timeout: float) -> bytes:  # noqa: ASYNC109 (a 408, not a cancel)
    """Read the request body, at most ``limit`` bytes, within ``timeout`` seconds.

    :param limit: the largest accepted body, in bytes.
    :param timeout: seconds the whole body may take to arrive; 0: no limit.
    :raises CallbackRejected: 413 (larger than ``limit``), 408 with ``Connection: close`` (not complete
        within ``timeout``; the rest of the body is never read, so the connection cannot be reused), or 400
        (the client disconnected before the body was complete; nobody reads that answer).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise CallbackRejected(413, f"Body larger than {limit} bytes")

    async def read() -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise CallbackRejected(413, f"Body larger than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            raise CallbackRejected(400, "Client disconnected before the body was complete") from None
        return b"".join(chunks)

    if timeout <= 0:
        return await read()
    try:
        with anyio.fail_after(timeout):  # a cancel scope: no task per request, as asyncio.wait_for would start
            return await read()
    except TimeoutError:
        raise CallbackRejected(408, f"Body not received within {timeout:g} s", {"Connection": "close"}) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: JSON allows it, no reader can write it back as JSON
        raise ValueError(f"{text} is out of the range of a double")
    return value


def parse_envelope(raw: bytes) -> ReceivedEvent:
    """Parse and validate a body.

    :raises CallbackRejected: 400 for unparseable JSON (syntax, ``NaN``, a number out of a double's range),
        422 for anything outside the input domain (not an object, nested too deeply, not an envelope, see
        :func:`~airflow_edc_callbacks.models.check_json_value`).
    """
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise CallbackRejected(422, "JSON nested too deeply for an EDC EventEnvelope") from None
    except (UnicodeDecodeError, ValueError):
        raise CallbackRejected(400, "Body is not parseable JSON") from None
    if not isinstance(body, dict):
        raise CallbackRejected(422, "Body must be a JSON object (an EDC EventEnvelope)")
    try:
        check_json_value(body)
    except ValueError as err:
        raise CallbackRejected(422, str(err)) from None
    try:
        envelope = EventEnvelope.model_validate(body)
    except (TypeError, RecursionError) as err:  # no input may make the receiver answer 500
        raise CallbackRejected(422, f"Body is not an EDC EventEnvelope ({type(err).__name__})") from None
    except ValidationError as err:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors(include_url=False)]
        raise CallbackRejected(422, errors) from None
    return ReceivedEvent(envelope, body)


async def read_event(request: Request, limit: int, timeout: float) -> ReceivedEvent:  # noqa: ASYNC109
    """Check the content type, read the body (see :func:`read_body`) and validate it (:func:`parse_envelope`;
    bodies over 64 KiB in a worker thread).

    :raises CallbackRejected: 415 for a content type that is not JSON, else as the two functions.
    """
    if not is_json_media_type(request.headers.get("content-type")):
        raise CallbackRejected(415, "Content-Type must be application/json")
    raw = await read_body(request, limit, timeout)
    if len(raw) > _PARSE_IN_THREAD_BYTES:
        return await run_in_threadpool(parse_envelope, raw)
    return parse_envelope(raw)
