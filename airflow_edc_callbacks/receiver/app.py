"""The callback receiver: a FastAPI app that verifies, validates and durably stores EDC callback events.

Routes: ``POST /callbacks/{token}`` (dynamic callbacks; the signed token names the task),
``POST /callbacks/static/{name}`` (static callbacks; the registration's header and secret are required,
events are routed by their process id), ``GET /health``.

Mounted on the Airflow api-server at ``/edc-callbacks`` by the provider's plugin, or served standalone
by ``airflow-edc-callbacks serve``. It answers 2xx only after the event is committed to the store, and
4xx (never 5xx) to bad input, storing nothing:

======  =====================================================================
status  when
======  =====================================================================
200     stored (``{"status": "stored"}``), already stored (``"duplicate"``), or an event about no
        transfer process or contract negotiation that a dynamic token carried (``"ignored"``, not
        stored; through a static route such an event is stored for watchers)
400     the body is not parseable JSON (syntax, a number Python will not read, ``NaN``)
401     the auth header (configured, or the static registration's) is missing or wrong
403     the token is not the one of the task instance its process is bound to (nothing stored)
404     the token's signature does not verify, or no static callback has that name
408     the body did not arrive within ``[edc_callbacks] body_timeout`` (10 s)
409     an event with this envelope id and another body is stored (the stored one stays)
413     the body is larger than ``[edc_callbacks] max_body_size`` (1 MiB)
415     the content type is not JSON
422     the JSON is not an EDC event envelope, or leaves the input domain (nesting deeper than
        :data:`~airflow_edc_callbacks.models.MAX_JSON_DEPTH`, ``at`` outside years 1970-9999, control
        characters in ``id``, ``type`` or a process id, invalid Unicode or NUL in any string)
503     the store cannot be opened or written (with ``Retry-After``); nothing is answered 2xx that is
        not committed to the store
======  =====================================================================
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from airflow_edc_callbacks import metrics
from airflow_edc_callbacks.config import (
    get_body_timeout,
    get_callback_auth,
    get_max_body_bytes,
    get_purge_interval,
    get_retention,
    get_store_url,
)
from airflow_edc_callbacks.exceptions import EventConflictError, ProcessBoundElsewhereError, StoreUnavailableError
from airflow_edc_callbacks.models import EventEnvelope, check_json_value
from airflow_edc_callbacks.redaction import RedactPathMiddleware
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration, check_name, lookup_registration
from airflow_edc_callbacks.store import EventStore, get_store
from airflow_edc_callbacks.tokens import get_verification_keys, verify_token

log = logging.getLogger(__name__)

__all__ = ["ReceiverSettings", "create_app"]


@dataclass
class ReceiverSettings:
    """What the receiver needs; fields left ``None`` are read from ``[edc_callbacks]`` on first use.

    :ivar store_url: the event store URL.
    :ivar signing_key: the key callback tokens are verified with, or a list of keys (the current one and
        older ones during a rotation); default every key of ``[edc_callbacks] callback_signing_key``.
    :ivar auth: ``(header name, expected value)``, or ``None``: then, while ``auth_from_config`` is true,
        it is read from ``callback_auth_secret`` / ``callback_auth_header``, else no header is checked.
    :ivar auth_from_config: whether a ``None`` ``auth`` is read from the configuration.
    :ivar max_body_bytes: the largest accepted body, in bytes.
    :ivar static_lookup: finds a static callback registration by name (default: the registration
        connections, :func:`~airflow_edc_callbacks.static_callbacks.lookup_registration`).
    :ivar static_cache_seconds: how long a found registration is reused (a rotated secret's old value is
        accepted that long at most).
    :ivar static_negative_cache_seconds: how long a name no registration was found for is answered 404
        without another lookup (a newly registered name is accepted that long after its registration at
        most). 0: every request looks the name up.
    :ivar static_negative_cache_size: at most this many such names are remembered (the oldest are
        forgotten first), so requests to random names cannot grow the cache without bound.
    :ivar retention: how long events are kept (``[edc_callbacks] retention``, 7 days).
    :ivar purge_interval: seconds between two background purges (``[edc_callbacks] purge_interval``,
        1 hour; 0 disables them). The first runs with the first request the receiver answers.
    :ivar body_timeout: seconds a callback's body may take to arrive once its headers are in
        (``[edc_callbacks] body_timeout``, 10); a slower one is answered 408. 0: no limit.
    """

    store_url: str | None = None
    signing_key: bytes | list[bytes] | None = None
    auth: tuple[str, str] | None = None
    auth_from_config: bool = True
    max_body_bytes: int | None = None
    static_lookup: Callable[[str], StaticCallbackRegistration | None] | None = None
    static_cache_seconds: float = 10.0
    static_negative_cache_seconds: float = 5.0
    static_negative_cache_size: int = 10_000
    retention: timedelta | None = None
    purge_interval: float | None = None
    body_timeout: float | None = None
    _store: EventStore | None = None
    _static_cache: dict[str, tuple[float, StaticCallbackRegistration]] = field(default_factory=dict)
    _static_missing: dict[str, float] = field(default_factory=dict)
    _static_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def resolve(self) -> ReceiverSettings:
        if self.signing_key is None:
            self.signing_key = get_verification_keys()
        if self.auth is None and self.auth_from_config:
            self.auth = get_callback_auth()
            self.auth_from_config = False
        if self.max_body_bytes is None:
            self.max_body_bytes = get_max_body_bytes()
        if self.store_url is None:
            self.store_url = get_store_url()
        if self.retention is None:
            self.retention = get_retention()
        if self.purge_interval is None:
            self.purge_interval = get_purge_interval().total_seconds()
        if self.body_timeout is None:
            self.body_timeout = get_body_timeout()
        return self

    def static_registration(self, name: str, *, fresh: bool = False) -> StaticCallbackRegistration | None:
        """The static callback registered as ``name``, or ``None``.

        Found registrations are reused for ``static_cache_seconds``, names found unregistered for
        ``static_negative_cache_seconds``; ``fresh`` skips both caches (the route asks again before it
        refuses a found registration's wrong secret, so a rotated secret is never refused because of the
        cache). Blocking (a connection lookup): call it from a thread; thread-safe.

        :raises ValueError: the registration's connection is malformed.
        :raises Exception: whatever the lookup raises (secrets backend or metastore faults).
        """
        try:
            check_name(name)
        except ValueError:
            return None
        now = time.monotonic()
        if not fresh:
            with self._static_lock:
                cached = self._static_cache.get(name)
                if cached is not None and now - cached[0] < self.static_cache_seconds:
                    return cached[1]
                missing_since = self._static_missing.get(name)
                if missing_since is not None and now - missing_since < self.static_negative_cache_seconds:
                    return None
        registration = (self.static_lookup or lookup_registration)(name)
        with self._static_lock:
            if registration is None:
                self._static_cache.pop(name, None)
                self._remember_missing(name, time.monotonic())
            else:
                self._static_missing.pop(name, None)
                self._static_cache[name] = (now, registration)
        return registration

    def _remember_missing(self, name: str, now: float) -> None:
        """Add ``name`` to the negative cache, dropping expired and, beyond its size, the oldest names."""
        missing = self._static_missing
        missing.pop(name, None)  # re-inserted last: the dictionary stays ordered by time
        while missing:
            oldest, since = next(iter(missing.items()))
            if now - since < self.static_negative_cache_seconds and len(missing) < self.static_negative_cache_size:
                break
            del missing[oldest]
        if self.static_negative_cache_seconds > 0 and self.static_negative_cache_size > 0:
            missing[name] = now

    @property
    def store(self) -> EventStore:
        """The event store, opened on first use (blocking: call it from a thread).

        :raises StoreUnavailableError: it cannot be opened; the next use tries again.
        """
        if self._store is None:
            self._store = get_store(self.store_url)
        return self._store


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class _Rejected(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _body_timeout(request: Request) -> float:
    settings = getattr(request.app.state, "edc_settings", None)
    timeout = settings.body_timeout if isinstance(settings, ReceiverSettings) else None
    return float(timeout or 0)


async def _read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """Read the request body, at most ``limit`` bytes, within ``timeout`` seconds.

    :param limit: the largest accepted body, in bytes.
    :param timeout: seconds the whole body may take to arrive (default: the app's
        ``ReceiverSettings.body_timeout``); 0: no limit.
    :raises _Rejected: 413 (larger than ``limit``), 408 with ``Connection: close`` (not complete within
        ``timeout``; the rest of the body is never read, so the connection cannot be reused), or 400 (the
        client disconnected before the body was complete; nobody reads that answer).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Rejected(_error(413, f"Body larger than {limit} bytes"))

    async def read() -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _Rejected(_error(413, f"Body larger than {limit} bytes"))
                chunks.append(chunk)
        except ClientDisconnect:
            raise _Rejected(_error(400, "Client disconnected before the body was complete")) from None
        return b"".join(chunks)

    seconds = _body_timeout(request) if timeout is None else timeout
    if seconds <= 0:
        return await read()
    try:
        return await asyncio.wait_for(read(), seconds)
    except asyncio.TimeoutError:
        raise _Rejected(_error(408, f"Body not received within {seconds:g} s", {"Connection": "close"})) from None


_PARSE_IN_THREAD_BYTES = 64 * 1024
"""Bodies larger than this are parsed and checked in a worker thread, off the event loop."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400: JSON allows it, no reader can write it back as JSON
        raise ValueError(f"{text} is out of the range of a double")
    return value


def _parse_envelope(raw: bytes) -> tuple[EventEnvelope, dict[str, Any]]:
    """Parse and validate a body: the envelope model and the JSON object as received.

    :raises _Rejected: 400 for unparseable JSON, 422 for anything outside the input domain.
    """
    try:
        body = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise _Rejected(_error(422, "JSON nested too deeply for an EDC EventEnvelope")) from None
    except (UnicodeDecodeError, ValueError):
        raise _Rejected(_error(400, "Body is not parseable JSON")) from None
    if not isinstance(body, dict):
        raise _Rejected(_error(422, "Body must be a JSON object (an EDC EventEnvelope)"))
    try:
        check_json_value(body)
    except ValueError as err:
        raise _Rejected(_error(422, str(err))) from None
    try:
        envelope = EventEnvelope.model_validate(body)
    except (TypeError, RecursionError) as err:  # no input may make the receiver answer 500
        raise _Rejected(_error(422, f"Body is not an EDC EventEnvelope ({type(err).__name__})")) from None
    except ValidationError as err:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors(include_url=False)]
        raise _Rejected(JSONResponse({"detail": errors}, status_code=422)) from None
    return envelope, body


def _open_and_record(
    cfg: ReceiverSettings, envelope: EventEnvelope, body: dict[str, Any], correlation_id: str | None, route: str
) -> bool:
    return cfg.store.record(envelope, body, correlation_id=correlation_id, route=route)


async def _accept_event(
    request: Request, cfg: ReceiverSettings, *, correlation_id: str | None, route: str
) -> JSONResponse:
    """Validate and store one event (after the route checked who sent it); the shared part of both routes."""
    if not _is_json_media_type(request.headers.get("content-type")):
        return _error(415, "Content-Type must be application/json")
    try:
        raw = await _read_body(request, cfg.max_body_bytes or 0)
        if len(raw) > _PARSE_IN_THREAD_BYTES:
            envelope, body = await run_in_threadpool(_parse_envelope, raw)
        else:
            envelope, body = _parse_envelope(raw)
    except _Rejected as rejected:
        return rejected.response
    if envelope.process_id is None and correlation_id is not None:
        # a dynamic callback address is registered for transfer or negotiation events only
        log.info("Callback %s (%s) via %s is about no process: not stored", envelope.id, envelope.type, route)
        return JSONResponse({"status": "ignored", "id": envelope.id})
    try:
        inserted = await run_in_threadpool(_open_and_record, cfg, envelope, body, correlation_id, route)
    except StoreUnavailableError as err:
        log.error("Callback %s (%s) not stored: %s", envelope.id, envelope.type, err)
        return _error(503, "Event store unavailable", {"Retry-After": "5"})
    except ProcessBoundElsewhereError as err:
        log.warning(
            "Callback %s (%s) refused: process %s is bound to another task instance than the token's (%s)",
            envelope.id,
            envelope.type,
            err.process_id,
            err.offered,
        )
        return _error(403, f"This callback token is not the one of the task that started {err.process_id}")
    except EventConflictError:
        log.warning(
            "Callback %s (%s) for %s via %s: this envelope id is stored with another body; kept the stored one",
            envelope.id,
            envelope.type,
            envelope.process_id,
            route,
        )
        return _error(409, "An event with this id and another body is stored")
    except (ValueError, OverflowError, RecursionError) as err:  # the database refused a value
        log.warning("Callback %s (%s) not storable: %s", envelope.id, envelope.type, type(err).__name__)
        return _error(422, "Event envelope has values the store cannot hold")
    log.info(
        "Callback %s %s for %s via %s (%s)",
        envelope.type,
        envelope.id,
        envelope.process_id or "no process",
        route,
        "stored" if inserted else "duplicate",
    )
    return JSONResponse({"status": "stored" if inserted else "duplicate", "id": envelope.id})


async def _dynamic_callback(token: str, request: Request, cfg: ReceiverSettings) -> JSONResponse:
    correlation_id = verify_token(cfg.signing_key or b"", token)
    if correlation_id is None:
        return _error(404, "Unknown callback token")
    if cfg.auth is not None:
        header, expected = cfg.auth
        given = request.headers.get(header, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _error(401, f"Missing or wrong {header} header")
    return await _accept_event(request, cfg, correlation_id=correlation_id, route="dynamic")


async def _static_callback(name: str, request: Request, cfg: ReceiverSettings) -> JSONResponse:
    def authorised(registration: StaticCallbackRegistration) -> bool:
        given = request.headers.get(registration.auth_header, "")
        return hmac.compare_digest(given.encode(), registration.secret.encode())

    try:
        registration = await run_in_threadpool(cfg.static_registration, name)
        if registration is not None and not authorised(registration):  # maybe rotated: ask again before refusing
            registration = await run_in_threadpool(partial(cfg.static_registration, name, fresh=True))
    except Exception as err:  # a secrets backend or metastore fault, or a malformed registration
        log.error("Static callback %s: registration lookup failed: %s", name, type(err).__name__)
        return _error(503, "Static callback registrations unavailable", {"Retry-After": "5"})
    if registration is None:
        return _error(404, "Unknown static callback")
    if not authorised(registration):
        return _error(401, f"Missing or wrong {registration.auth_header} header")
    return await _accept_event(request, cfg, correlation_id=None, route=f"static:{name}")


def _counted(response: JSONResponse) -> JSONResponse:
    """Count the answer in the metrics (accepted, duplicate, ignored, conflict, rejected by reason)."""
    status = None
    if response.status_code == 200:  # our own compact JSON: no need to parse it back
        body = bytes(response.body)
        status = next((s for s in ("duplicate", "ignored") if f'"status":"{s}"'.encode() in body), "stored")
    metrics.callback_answered(response.status_code, status)
    return response


async def _get_settings(request: Request) -> ReceiverSettings:
    settings: ReceiverSettings = request.app.state.edc_settings.resolve()
    if settings.purge_interval and getattr(request.app.state, "edc_retention", None) is None:
        # started lazily: a FastAPI app mounted on the api-server by a plugin gets no lifespan events
        task = _retention(settings, settings.retention or get_retention(), settings.purge_interval)
        request.app.state.edc_retention = asyncio.get_running_loop().create_task(task)
    return settings


def _purge(cfg: ReceiverSettings, retention: timedelta) -> int:
    return cfg.store.purge(retention)


async def _retention(cfg: ReceiverSettings, retention: timedelta, interval: float) -> None:
    """Purge events older than ``retention`` now and every ``interval`` seconds (see :meth:`EventStore.purge`)."""
    while True:
        try:
            purged = await run_in_threadpool(_purge, cfg, retention)
        except StoreUnavailableError as err:
            log.warning("Retention: the event store is unavailable (%s); next try in %.0f s", err, interval)
        else:
            if purged:
                log.info("Retention: purged %d events older than %s", purged, retention)
                metrics.incr("store.purged", purged)
        await asyncio.sleep(interval)


def _ping(cfg: ReceiverSettings) -> None:
    cfg.store.ping()


SettingsDep = Annotated[ReceiverSettings, Depends(_get_settings)]

_ENVELOPE_SCHEMA = EventEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
_CALLBACK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventEnvelope"}}},
    },
    "responses": {
        "200": {"description": "Stored, already stored (duplicate delivery), or about no process (ignored)"},
        "400": {"description": "Body is not parseable JSON"},
        "401": {"description": "Auth header missing or wrong"},
        "403": {"description": "The token is not the one of the task its process is bound to"},
        "404": {"description": "Unknown or forged callback token"},
        "408": {"description": "Body not received in time"},
        "409": {"description": "An event with this id and another body is stored"},
        "413": {"description": "Body too large"},
        "415": {"description": "Content type is not JSON"},
        "422": {"description": "Body is not an EDC event envelope, or outside the accepted input domain"},
        "503": {"description": "Event store unavailable; nothing stored"},
    },
}


_STATIC_OPENAPI: dict[str, Any] = {
    **_CALLBACK_OPENAPI,
    "responses": {
        **_CALLBACK_OPENAPI["responses"],
        "401": {"description": "The registration's auth header is missing or wrong"},
        "404": {"description": "No static callback registered under this name"},
    },
}


def create_app(settings: ReceiverSettings | None = None) -> FastAPI:
    """Build the receiver app.

    :param settings: explicit settings (tests, the standalone server); by default everything comes
        from ``[edc_callbacks]`` on the first request, so creating the app reads no configuration.
    """
    app = FastAPI(
        title="EDC callback receiver",
        description="Receives EDC connector callback events (EventEnvelope JSON) for airflow-edc-callbacks.",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # no 307 to a Location built from the Host header
    )
    app.add_middleware(RedactPathMiddleware)
    app.state.edc_settings = settings or ReceiverSettings()
    router = APIRouter()

    @router.post(
        "/callbacks/{token}",
        summary="Receive a dynamic callback event",
        openapi_extra=_CALLBACK_OPENAPI,
        responses={200: {"content": {"application/json": {}}}},
    )
    async def receive_callback(token: str, request: Request, cfg: SettingsDep) -> JSONResponse:
        return _counted(await _dynamic_callback(token, request, cfg))

    @router.post(
        "/callbacks/static/{name}",
        summary="Receive a static callback event (edc.callback.<name>.* on the connector)",
        openapi_extra=_STATIC_OPENAPI,
        responses={200: {"content": {"application/json": {}}}},
    )
    async def receive_static_callback(name: str, request: Request, cfg: SettingsDep) -> JSONResponse:
        return _counted(await _static_callback(name, request, cfg))

    @router.get("/health", summary="Receiver and store health")
    async def health(cfg: SettingsDep) -> JSONResponse:
        try:
            await run_in_threadpool(_ping, cfg)
        except StoreUnavailableError:
            return _error(503, "Event store unavailable", {"Retry-After": "5"})
        return JSONResponse({"status": "ok", "store": "ok"})

    app.include_router(router)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            envelope_schema = dict(_ENVELOPE_SCHEMA)
            components.update(envelope_schema.pop("$defs", {}))
            components["EventEnvelope"] = envelope_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _version() -> str:
    from airflow_edc_callbacks import __version__

    return __version__
