"""``POST /callbacks/{token}``: dynamic callbacks, addressed to one task by a signed token."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from airflow_edc_callbacks.receiver.dependencies import DynamicCaller, Event, Settings
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
async def receive_callback(correlation_id: DynamicCaller, event: Event, cfg: Settings) -> JSONResponse:
    """Store the event for the task the token names; an event about no process is answered ``ignored``
    (a dynamic callback address is registered for transfer or negotiation events only)."""
    envelope = event.envelope
    if envelope.process_id is None:
        log.info("Callback %s (%s) via dynamic is about no process: not stored", envelope.id, envelope.type)
        return answered(CallbackOutcome.IGNORED, envelope.id)
    outcome = await store_event(cfg, event, correlation_id=correlation_id, route="dynamic")
    return answered(outcome, envelope.id, then=log_outcome(event, "dynamic", outcome))
