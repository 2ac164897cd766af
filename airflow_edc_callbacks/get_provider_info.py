"""Provider metadata for Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_edc_callbacks import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider info dictionary (validated by Airflow against ``provider_info.schema.json``)."""
    return {
        "package-name": "airflow-edc-callbacks",
        "name": "EDC Callbacks",
        "description": "Start Eclipse Dataspace Components (EDC) transfers and resume on the connector's callbacks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Eclipse Dataspace Components",
                "external-doc-url": "https://eclipse-edc.github.io/documentation/",
                "tags": ["protocol"],
            }
        ],
        "operators": [
            {
                "integration-name": "Eclipse Dataspace Components",
                "python-modules": [
                    "airflow_edc_callbacks.operators.transfer",
                    "airflow_edc_callbacks.operators.negotiation",
                    "airflow_edc_callbacks.operators.pipeline",
                    "airflow_edc_callbacks.operators.pull",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Eclipse Dataspace Components",
                "python-modules": ["airflow_edc_callbacks.sensors.transfer"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Eclipse Dataspace Components",
                "python-modules": ["airflow_edc_callbacks.hooks.edc", "airflow_edc_callbacks.hooks.static_callback"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Eclipse Dataspace Components",
                "python-modules": [
                    "airflow_edc_callbacks.triggers.callback",
                    "airflow_edc_callbacks.triggers.events",
                    "airflow_edc_callbacks.triggers.negotiation",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "edc",
                "hook-class-name": "airflow_edc_callbacks.hooks.edc.EdcManagementHook",
                "hook-name": "EDC Management API",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"host": "Management API base URL", "password": "API key (X-Api-Key)"},
                    "placeholders": {"host": "http://consumer-controlplane:8081/management"},
                },
                "conn-fields": {
                    "api_version": {
                        "label": "Management API version",
                        "description": "v3 (EDC up to 0.18), v4beta (EDC 0.14 to 0.16) or v4 (EDC 0.17 and later).",
                        "schema": {"type": ["string", "null"], "default": "v3", "enum": ["v3", "v4beta", "v4"]},
                    },
                    "connector_version": {
                        "label": "Connector EDC version",
                        "description": (
                            "e.g. 0.13.0: selects that version's DSP protocol id (2024/1 before 0.14) and checks "
                            "the Management API version. Empty: a connector of 0.14 or later."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "tractusx": {
                        "label": "Tractus-X EDC",
                        "description": (
                            "The connector is Tractus-X EDC: EDRs are read with auto_refresh and refreshed through "
                            "its EDR API (POST /v3/edrs/{id}/refresh), one refresh at a time per transfer."
                        ),
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "protocol": {
                        "label": "DSP protocol",
                        "description": "Overrides the protocol id of the connector version.",
                        "schema": {"type": ["string", "null"], "default": "dataspace-protocol-http:2025-1"},
                    },
                    "callback_auth_key": {
                        "label": "Callback auth header (authKey)",
                        "description": (
                            "Header the connector adds to callbacks; must match [edc_callbacks] callback_auth_header."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "callback_auth_code_id": {
                        "label": "Callback auth vault alias (authCodeId)",
                        "description": "Alias of the header value in the connector's vault.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
        "plugins": [{"name": "edc_callbacks", "plugin-class": "airflow_edc_callbacks.plugin.EdcCallbacksPlugin"}],
        "config": {
            "edc_callbacks": {
                "description": "The EDC callback receiver, its event store and the waiting triggers.",
                "options": {
                    "store_url": _option(
                        "SQLAlchemy URL of the callback event store. Default: a SQLite file "
                        "edc_callbacks.db in AIRFLOW_HOME (one machine). Use PostgreSQL when the api-server "
                        "and triggerers run on several hosts: postgresql+psycopg:// (the [postgres] extra); "
                        "no other driver is accepted.",
                        "string",
                        None,
                        "postgresql+psycopg://airflow:***@postgres/edc_callbacks",
                        sensitive=True,
                    ),
                    "callback_base_url": _option(
                        "Base URL of the receiver as the EDC connector reaches it (without /callbacks). "
                        "Default: [api] base_url + /edc-callbacks.",
                        "string",
                        None,
                        "http://airflow-apiserver:8080/edc-callbacks",
                    ),
                    "callback_signing_key": _option(
                        "Key that signs callback tokens. When unset, a key is generated once in AIRFLOW_HOME; "
                        "set it when the api-server, workers and triggerers run on several hosts.",
                        "string",
                        None,
                        None,
                        sensitive=True,
                    ),
                    "callback_auth_header": _option(
                        "Header every callback must carry when callback_auth_secret is set (the callback's authKey).",
                        "string",
                        "X-Edc-Callback-Auth",
                        None,
                    ),
                    "callback_auth_secret": _option(
                        "Expected value of callback_auth_header; store the same value in the connector's vault "
                        "under the connection's callback_auth_code_id. Unset: no header check.",
                        "string",
                        None,
                        None,
                        sensitive=True,
                    ),
                    "fallback_check_interval": _option(
                        "Seconds without a callback after which a waiting trigger asks the connector for the state "
                        "(EDC does not re-deliver lost callbacks); while silence goes on it asks again after 2x, 4x... "
                        "that (at most 1 h).",
                        "float",
                        "300",
                        None,
                    ),
                    "stall_warning_after": _option(
                        "Seconds a waited-for transfer or negotiation may stay in the same non-terminal state "
                        "before the task log gets one warning naming the state and its usual cause.",
                        "float",
                        "600",
                        None,
                    ),
                    "retention": _option(
                        "How long stored callback events are kept (e.g. 7d, 12h); the events of waiting "
                        "triggers are kept longer.",
                        "string",
                        "7d",
                        None,
                    ),
                    "purge_interval": _option(
                        "Time between two purges of events older than retention, run by every receiver "
                        "in the background (e.g. 1h; 0 disables them; airflow-edc-callbacks purge runs one).",
                        "string",
                        "1h",
                        None,
                    ),
                    "max_body_size": _option("Largest accepted callback body, in bytes.", "integer", "1048576", None),
                    "body_timeout": _option(
                        "Seconds a callback body may take to arrive once its headers are in; a slower one is "
                        "answered 408 (0: no limit).",
                        "float",
                        "10",
                        None,
                    ),
                },
            }
        },
    }


def _option(
    description: str, type_: str, default: str | None, example: str | None, *, sensitive: bool = False
) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": type_,
        "default": default,
        "example": example,
        "sensitive": sensitive,
    }
