"""The Airflow plugin that mounts the callback receiver on the api-server at ``/edc-callbacks``."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_edc_callbacks.config import API_SERVER_PREFIX
from airflow_edc_callbacks.receiver import create_app
from airflow_edc_callbacks.redaction import install_access_log_filter

# Airflow 3.3's api-server writes its access lines with HttpAccessLogMiddleware (the structlog logger
# "http.access", reading the path from the ASGI scope), which the receiver app's RedactPathMiddleware covers;
# it silences uvicorn's and gunicorn's own access loggers. Should a deployment turn those on again, their
# lines are redacted too.
install_access_log_filter()


class EdcCallbacksPlugin(AirflowPlugin):
    """Serves ``POST /edc-callbacks/callbacks/{token}`` and ``GET /edc-callbacks/health``.

    Airflow does not authenticate plugin apps; the receiver checks the signed token (and the optional
    auth header) itself. Callback token signatures are redacted from the api-server's access log.
    """

    name = "edc_callbacks"
    fastapi_apps = [{"app": create_app(), "url_prefix": API_SERVER_PREFIX, "name": "EDC callback receiver"}]
