"""What the receiver's routes check, in the order they call it: who sent a callback (the dynamic token and
auth header, or the static registration and its secret), then the validated event.

Only the settings are a FastAPI dependency (:data:`Settings`); the routes call the checks themselves, since
resolving each as a dependency of its own costs a callback more than the checks do. Tests and embedding
applications replace the settings with ``app.dependency_overrides[get_settings] = lambda: settings.resolve()``.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from airflow_edc_callbacks.receiver.body import ReceivedEvent, read_event
from airflow_edc_callbacks.receiver.responses import CallbackRejected
from airflow_edc_callbacks.receiver.settings import ReceiverSettings
from airflow_edc_callbacks.static_callbacks import StaticCallbackRegistration
from airflow_edc_callbacks.tokens import verify_token

log = logging.getLogger(__name__)


async def get_settings(request: Request) -> ReceiverSettings:
    """The app's :class:`ReceiverSettings` (``app.state.edc_settings``), ``[edc_callbacks]`` read on first use.

    :raises ValueError: a configured value is malformed (see :meth:`ReceiverSettings.resolve`).
    """
    settings: ReceiverSettings = request.app.state.edc_settings
    return settings.resolve()


Settings = Annotated[ReceiverSettings, Depends(get_settings)]


def _header_matches(request: Request, header: str, expected: str) -> bool:
    given = request.headers.get(header, "")
    return hmac.compare_digest(given.encode(), expected.encode())


def token_correlation_id(token: str, cfg: ReceiverSettings) -> str:
    """The correlation id a dynamic callback's token (path parameter ``token``) carries.

    :raises CallbackRejected: 404, the token's signature does not verify with any of the keys.
    """
    correlation_id = verify_token(cfg.signing_key or b"", token)
    if correlation_id is None:
        raise CallbackRejected(404, "Unknown callback token")
    return correlation_id


def dynamic_caller(token: str, request: Request, cfg: ReceiverSettings) -> str:
    """A dynamic callback's correlation id, once its token (path parameter ``token``) verified and its auth
    header (if configured) matched.

    :raises CallbackRejected: 404 (see :func:`token_correlation_id`), 401 (the auth header is missing or wrong).
    """
    correlation_id = token_correlation_id(token, cfg)
    if cfg.auth is not None:
        header, expected = cfg.auth
        if not _header_matches(request, header, expected):
            raise CallbackRejected(401, f"Missing or wrong {header} header")
    return correlation_id


async def static_caller(name: str, request: Request, cfg: ReceiverSettings) -> StaticCallbackRegistration:
    """The static callback registration ``name`` (path parameter), once the request carries its secret.

    A found registration whose secret does not match is looked up afresh before the request is refused (the
    secret may just have been rotated, and EDC never re-delivers a refused callback), by at most one lookup
    per name and :attr:`~ReceiverSettings.static_refresh_seconds` that answers every request waiting for it
    (:meth:`~ReceiverSettings.refreshed_registration`): wrong secrets sent at any rate do not each cost a
    metastore or secrets-backend query.

    :raises CallbackRejected: 503 with ``Retry-After`` (the lookup failed: a secrets backend or metastore
        fault, or a malformed registration), 404 (no such registration), 401 (its header is missing or wrong).
    """

    def authorised(registration: StaticCallbackRegistration) -> bool:
        return _header_matches(request, registration.auth_header, registration.secret)

    try:
        hit, registration = cfg.cached_static_registration(name)  # no thread for what the caches answer
        if not hit:
            registration = await run_in_threadpool(cfg.static_registration, name)
        if registration is not None and not authorised(registration):  # maybe rotated: ask again before refusing
            registration = await cfg.refreshed_registration(name, asked=time.monotonic())
    except Exception as err:  # a secrets backend or metastore fault, or a malformed registration
        log.error("Static callback %s: registration lookup failed: %s", name, type(err).__name__)
        raise CallbackRejected(503, "Static callback registrations unavailable", {"Retry-After": "5"}) from None
    if registration is None:
        raise CallbackRejected(404, "Unknown static callback")
    if not authorised(registration):
        raise CallbackRejected(401, f"Missing or wrong {registration.auth_header} header")
    return registration


async def received_event(request: Request, cfg: ReceiverSettings) -> ReceivedEvent:
    """The callback's body as a validated event, within ``cfg``'s size and time limits.

    :raises CallbackRejected: 415, 413, 408, 400 or 422 (see :func:`~airflow_edc_callbacks.receiver.body.read_event`).
    """
    return await read_event(request, cfg.max_body_bytes or 0, float(cfg.body_timeout or 0))
