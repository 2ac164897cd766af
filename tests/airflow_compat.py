"""Airflow names the tests use that moved between the supported minors (3.1, 3.2, 3.3).

The package's own differences are in :mod:`airflow_edc_callbacks._compat`; these are the test-only ones.
"""

from __future__ import annotations

from datetime import timedelta

from airflow_edc_callbacks._compat import AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import TaskDeferred
else:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

__all__ = ["DagBag", "TaskDeferred", "api_server_access_line", "deferral_timeout"]


def deferral_timeout(deferred: TaskDeferred) -> timedelta | None:
    """The timeout of a deferral as a ``timedelta``: 3.1's ``TaskDeferred`` turns seconds into one, 3.2+ keep
    what the operator passed."""
    timeout = deferred.timeout
    return timedelta(seconds=timeout) if isinstance(timeout, (int, float)) else timeout


def api_server_access_line(method: str, path: str, query: str = "") -> str:
    """The start of the api-server's access line for a request (method, path and, on 3.1, the query).

    3.2+ write it with ``HttpAccessLogMiddleware`` (structlog ``http.access``: ``method=POST path=/p query=...``,
    the query quoted as is on 3.2 and percent-encoded on 3.3, so it is left out here); 3.1's api-server leaves
    it to uvicorn's access log (``"POST /p?q HTTP/1.1"``).
    """
    if AIRFLOW_V_3_2_PLUS:
        return f"method={method} path={path} query="
    return f'"{method} {path}{"?" + query if query else ""} HTTP/1.1"'


def redacted(text: str) -> str:
    """``text`` as Airflow's secrets masker writes it to a log (``***`` for each masked secret); the
    masker's ``redact`` lives in ``airflow.sdk._shared.secrets_masker`` on Airflow 3.1 to 3.3."""
    from airflow.sdk._shared.secrets_masker import redact

    return str(redact(text))
