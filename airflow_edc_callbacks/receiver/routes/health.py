"""``GET /health``: the receiver and its store."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.receiver.dependencies import Settings
from airflow_edc_callbacks.receiver.responses import error_response
from airflow_edc_callbacks.receiver.settings import ReceiverSettings

router = APIRouter()


def _ping(cfg: ReceiverSettings) -> None:
    cfg.store.ping()


@router.get("/health", summary="Receiver and store health")
async def health(cfg: Settings) -> JSONResponse:
    """``{"status": "ok", "store": "ok"}``, or 503 with ``Retry-After`` when the store cannot be reached."""
    try:
        await run_in_threadpool(_ping, cfg)
    except StoreUnavailableError:
        return error_response(503, "Event store unavailable", {"Retry-After": "5"})
    return JSONResponse({"status": "ok", "store": "ok"})
