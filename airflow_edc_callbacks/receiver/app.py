"""The callback receiver's assembly: a FastAPI app that verifies, validates and durably stores EDC callback events.

Routes: ``POST /callbacks/{token}`` (dynamic callbacks; the signed token names the task),
``POST /callbacks/static/{name}`` (static callbacks; the registration's header and secret are required,
events are routed by their process id), ``GET /health``; one router per concern in
:mod:`airflow_edc_callbacks.receiver.routes`, who may call and what was sent checked by the dependencies in
:mod:`airflow_edc_callbacks.receiver.dependencies`.

Mounted on the Airflow api-server at ``/edc-callbacks`` by the provider's plugin (the api-server runs
the app's lifespan, and with it the retention loop), or served standalone by ``airflow-edc-callbacks serve``.
It answers 2xx only after the event is committed to the store, and 4xx (never 5xx) to bad input, storing
nothing:

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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from airflow_edc_callbacks.models import EventEnvelope
from airflow_edc_callbacks.receiver.responses import CallbackRejected, answer_rejected
from airflow_edc_callbacks.receiver.retention import retention_running
from airflow_edc_callbacks.receiver.routes import dynamic_router, health_router, static_router
from airflow_edc_callbacks.receiver.settings import ReceiverSettings
from airflow_edc_callbacks.redaction import RedactPathMiddleware

_ENVELOPE_SCHEMA = EventEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs the retention loop (``[edc_callbacks] purge_interval``) while the app serves."""
    async with retention_running(app.state.edc_settings):
        yield


def _with_envelope_schema(app: FastAPI) -> None:
    """Add the ``EventEnvelope`` schema (and its definitions) to the app's OpenAPI document, which the
    callback routes' request bodies refer to (they read the body themselves, so FastAPI does not)."""
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


def create_app(settings: ReceiverSettings | None = None) -> FastAPI:
    """Build the receiver app.

    :param settings: explicit settings (tests, the standalone server); by default everything comes
        from ``[edc_callbacks]`` on the first request (the retention settings when the app starts), so
        creating the app reads no configuration. The routes take them from the dependency
        :func:`~airflow_edc_callbacks.receiver.dependencies.get_settings`, which tests may override.
    """
    app = FastAPI(
        title="EDC callback receiver",
        description="Receives EDC connector callback events (EventEnvelope JSON) for airflow-edc-callbacks.",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # no 307 to a Location built from the Host header
        lifespan=_lifespan,
    )
    app.add_middleware(RedactPathMiddleware)
    app.add_exception_handler(CallbackRejected, answer_rejected)
    app.state.edc_settings = settings or ReceiverSettings()
    app.include_router(dynamic_router)
    app.include_router(static_router)
    app.include_router(health_router)
    _with_envelope_schema(app)
    return app


def _version() -> str:
    from airflow_edc_callbacks import __version__

    return __version__
