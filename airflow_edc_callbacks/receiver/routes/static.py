"""``POST /callbacks/static/{name}``: static callbacks (``edc.callback.<name>.*`` on the connector)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from airflow_edc_callbacks.receiver.dependencies import Settings, received_event, static_caller
from airflow_edc_callbacks.receiver.events import log_outcome, store_event
from airflow_edc_callbacks.receiver.responses import answered
from airflow_edc_callbacks.receiver.routes.openapi import STATIC_OPENAPI

router = APIRouter()


@router.post(
    "/callbacks/static/{name}",
    summary="Receive a static callback event (edc.callback.<name>.* on the connector)",
    openapi_extra=STATIC_OPENAPI,
    responses={200: {"content": {"application/json": {}}}},
)
async def receive_static_callback(name: str, request: Request, cfg: Settings) -> JSONResponse:
    """Store the event sent by the registered static callback ``name``: it reaches waiting tasks by its
    process id; events about no process are stored too, for watchers."""
    # who sent it before what was sent: the registration and its secret (503, 404, 401), then the body
    await static_caller(name, request, cfg)
    event = await received_event(request, cfg)
    route = f"static:{name}"
    outcome = await store_event(cfg, event, correlation_id=None, route=route)
    return answered(outcome, event.envelope.id, then=log_outcome(event, route, outcome))
