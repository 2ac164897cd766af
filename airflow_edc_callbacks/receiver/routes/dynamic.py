"""``POST /callbacks/{token}``: dynamic callbacks, addressed to one task by a signed token."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from airflow_edc_callbacks.receiver.dependencies import Settings, dynamic_caller, received_event
from airflow_edc_callbacks.receiver.events import log_outcome, store_event
from airflow_edc_callbacks.receiver.responses import CallbackOutcome, answered
from airflow_edc_callbacks.receiver.routes.openapi import CALLBACK_OPENAPI

log = logging.getLogger(__name__)

router = APIRouter()


@router.post(
    "/callbacks/{token}",
    summary="Receive a dynamic callback event",
    openapi_extra=CALLBACK_OPENAPI,
    responses={200: {"content": {"application/json": {}}}},
)
async def receive_callback(token: str, request: Request, cfg: Settings) -> JSONResponse:
    """Store the event for the task the token names; an event about no process is answered ``ignored``
    (a dynamic callback address is registered for transfer or negotiation events only)."""
    # who sent it before what was sent: the token and auth header (404, 401), then the body
    correlation_id = dynamic_caller(token, request, cfg)
    event = await received_event(request, cfg)
    envelope = event.envelope
    if envelope.process_id is None:
        log.info("Callback %s (%s) via dynamic is about no process: not stored", envelope.id, envelope.type)
        return answered(CallbackOutcome.IGNORED, envelope.id)
    outcome = await store_event(cfg, event, correlation_id=correlation_id, route="dynamic")
    return answered(outcome, envelope.id, then=log_outcome(event, "dynamic", outcome))
