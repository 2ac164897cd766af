"""The receiver's routes, one router per concern: dynamic callbacks, static callbacks, health."""

from __future__ import annotations

from airflow_edc_callbacks.receiver.routes.dynamic import router as dynamic_router
from airflow_edc_callbacks.receiver.routes.health import router as health_router
from airflow_edc_callbacks.receiver.routes.static import router as static_router

__all__ = ["dynamic_router", "health_router", "static_router"]
