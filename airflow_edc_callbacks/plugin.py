"""The Airflow plugin: the callback receiver on the api-server at ``/edc-callbacks``, and a task instance's
callback timeline as the "EDC callbacks" tab of the task instance page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from airflow.plugins_manager import AirflowPlugin

from airflow_edc_callbacks import _compat
from airflow_edc_callbacks.config import API_SERVER_PREFIX
from airflow_edc_callbacks.receiver import create_app
from airflow_edc_callbacks.receiver.routes.timeline import router as timeline_router
from airflow_edc_callbacks.redaction import install_access_log_filter

# Airflow 3.3's api-server writes its access lines with HttpAccessLogMiddleware (the structlog logger
# "http.access", reading the path from the ASGI scope), which the receiver app's RedactPathMiddleware covers;
# it silences uvicorn's and gunicorn's own access loggers. Should a deployment turn those on again, their
# lines are redacted too.
install_access_log_filter()


def _app() -> Any:
    app = create_app()
    app.include_router(timeline_router)  # the api-server's only: it needs Airflow's auth manager
    return app


def timeline_href() -> str:
    """The task instance tab's page, as the Airflow UI fills it in (``{DAG_ID}``, ``{TASK_ID}``,
    ``{MAP_INDEX}``, ``{RUN_ID}``), below the path of ``[api] base_url`` (none by default)."""
    base = _compat.airflow_conf().get("api", "base_url", fallback=None) or ""
    path = urlparse(str(base)).path.rstrip("/")
    return f"{path}{API_SERVER_PREFIX}/timeline/{{DAG_ID}}/{{TASK_ID}}/{{MAP_INDEX}}/{{RUN_ID}}"


class EdcCallbacksPlugin(AirflowPlugin):
    """Serves ``POST /edc-callbacks/callbacks/{token}``, ``GET /edc-callbacks/health`` and, to users who may
    read a DAG's task instances, ``GET /edc-callbacks/timeline/...`` (the "EDC callbacks" tab).

    Airflow does not authenticate plugin apps; the receiver checks the signed token (and the optional
    auth header) itself, and the timeline page asks Airflow's auth manager. Callback token signatures are
    redacted from the api-server's access log.
    """

    name = "edc_callbacks"
    fastapi_apps = [{"app": _app(), "url_prefix": API_SERVER_PREFIX, "name": "EDC callback receiver"}]
    external_views = [
        {
            "name": "EDC callbacks",
            "href": timeline_href(),
            "destination": "task_instance",
            "url_route": "edc_callbacks",
        }
    ]
