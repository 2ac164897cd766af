"""The Airflow plugin that mounts the callback receiver on the api-server at ``/edc-callbacks``."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_edc_callbacks.config import API_SERVER_PREFIX
from airflow_edc_callbacks.receiver import create_app

__all__ = ["EdcCallbacksPlugin"]


class EdcCallbacksPlugin(AirflowPlugin):
    """Serves ``POST /edc-callbacks/callbacks/{token}`` and ``GET /edc-callbacks/health``.

    Airflow does not authenticate plugin apps; the receiver checks the signed token (and the optional
    auth header) itself.
    """

    name = "edc_callbacks"
    fastapi_apps = [{"app": create_app(), "url_prefix": API_SERVER_PREFIX, "name": "EDC callback receiver"}]
