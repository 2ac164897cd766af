"""``airflow-edc-callbacks doctor``'s check of an ``edc`` connection: it parses, its Management API answers
with the connection's API key, and in the connection's ``api_version``.

A Management API version the connector does not serve answers 404 (EDC serves ``/v3`` in every version,
``/v4beta`` from 0.14 to 0.16, ``/v4`` from 0.17: :mod:`airflow_edc_callbacks.connector_versions`); then the
check asks the other versions and names those that answer.
"""

from __future__ import annotations

from typing import Any

import httpx

from airflow_edc_callbacks.cli._common import shown
from airflow_edc_callbacks.cli.checks import Check
from airflow_edc_callbacks.config import DEFAULT_CONN_ID


def _query(client: httpx.Client, api_version: str) -> httpx.Response:
    from airflow_edc_callbacks.hooks import jsonld

    body = jsonld.query_spec(api_version, limit=1)
    return client.post(jsonld.api_path(api_version, "transferprocesses/request"), json=body)


def check_connection(conn_id: str | None, timeout: float) -> Check:
    """Check the ``edc`` connection ``conn_id`` (default ``edc_default``; when that one is not defined the
    check warns, when a named one is not, it fails)."""
    from airflow_edc_callbacks import _compat
    from airflow_edc_callbacks.hooks.base import EdcConnectionSettings
    from airflow_edc_callbacks.hooks.jsonld import API_VERSIONS

    name = f"connection {conn_id or DEFAULT_CONN_ID}"
    add = (
        f"airflow connections add {conn_id or DEFAULT_CONN_ID} --conn-type edc "
        "--conn-host http://<consumer>:<port>/management --conn-password <API key>"
    )
    try:
        conn = _compat.connection_from_secrets(conn_id or DEFAULT_CONN_ID)
    except Exception:  # AirflowNotFoundException of core or the Task SDK, or a secrets backend's fault
        return Check(name, "fail" if conn_id else "warn", "not defined", add)
    try:
        settings = EdcConnectionSettings.from_connection(conn)
    except ValueError as err:
        return Check(name, "fail", shown(str(err)), "fix the connection's host or extra (`airflow connections get`)")
    where = f"Management API {settings.api_version} at {settings.base_url}"
    headers = {"Accept": "application/json"}
    if settings.api_key:
        headers["X-Api-Key"] = settings.api_key
    with httpx.Client(base_url=settings.base_url, headers=headers, timeout=timeout) as client:
        try:
            response = _query(client, settings.api_version)
        except httpx.HTTPError as err:
            return Check(
                name,
                "fail",
                f"{where}: cannot reach it ({shown(str(err) or type(err).__name__)})",
                "set the connection's host to the connector's web.http.management URL as reachable from here",
            )
        if response.status_code in (401, 403):
            return Check(
                name,
                "fail",
                f"{where} refused the API key ({response.status_code})",
                "set the connection's password to the connector's Management API key",
            )
        if response.status_code == 404:
            answering = [v for v in API_VERSIONS if v != settings.api_version and _answers(client, v)]
            found = f"; it answers {', '.join(answering)}" if answering else "; it answers no other version either"
            return Check(
                name,
                "fail",
                f"{where}: not served (404){found}",
                "set the connection's extra api_version to a version the connector serves (and connector_version "
                "to its EDC version), or its host to the Management API's base URL",
            )
        if response.status_code != 200:
            return Check(name, "fail", f"{where} answered {response.status_code}", "check the connector's log")
    version = f"EDC {settings.connector_version}" if settings.connector_version else "connector_version not set"
    return Check(name, "ok", f"{where} answers ({version}; DSP {settings.protocol})")


def _answers(client: httpx.Client, api_version: str) -> bool:
    try:
        response: Any = _query(client, api_version)
    except httpx.HTTPError:
        return False
    return bool(response.status_code == 200)
