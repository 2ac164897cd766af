"""``POST /callbacks/static/{name}``: static callbacks (``edc.callback.<name>.*`` on the connector)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from airflow_edc_callbacks.receiver.dependencies import Event, Settings, StaticCaller
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
async def receive_static_callback(name: str, registration: StaticCaller, event: Event, cfg: Settings) -> JSONResponse:
    """Store the event sent by the registered static callback ``name``: it reaches waiting tasks by its
    process id; events about no process are stored too, for watchers."""
    route = f"static:{name}"
    outcome = await store_event(cfg, event, correlation_id=None, route=route)
    return answered(outcome, event.envelope.id, then=log_outcome(event, route, outcome))
