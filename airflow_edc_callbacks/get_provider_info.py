"""Provider metadata for Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_edc_callbacks import __version__
from airflow_edc_callbacks.config import OPTIONS, SECTION, ConfigOption


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
            SECTION: {
                "description": "The EDC callback receiver, its event store and the waiting triggers.",
                "options": {name: _option(option) for name, option in OPTIONS.items()},
            }
        },
    }


def _option(option: ConfigOption) -> dict[str, Any]:
    return {
        "description": option.description,
        "version_added": "0.1.0",
        "type": option.type,
        "default": option.default,
        "example": option.example,
        "sensitive": option.sensitive,
    }
