"""Static callback registrations and the connector settings for them (no Airflow imports).

A static callback is set at deployment time on the connector (EDC ``callback-static-endpoint``,
``CallbackStaticEndpointExtension``): ``edc.callback.<name>.uri``, ``.events`` (comma-separated prefixes,
mandatory), ``.transactional``, and the auth header name and vault alias, ``.auth.key`` / ``.auth.codeid``
since EDC 0.17 or ``.auth-key`` / ``.auth-code-id`` up to 0.16 (still read as a fallback later). It fires
for every matching event of the whole runtime, consumer and provider processes alike.

"Registering" one here means: our side knows its name, its secret and the events it expects, kept in an
Airflow connection ``edc_static_callback_<name>`` (type ``edc_static_callback``; the secret is the
connection's password, so it lives wherever Airflow keeps connections: the metastore or a secrets
backend, never plain config), and hands the connector's operator exactly the settings to deploy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_edc_callbacks.config import DEFAULT_AUTH_HEADER
from airflow_edc_callbacks.connector_versions import profile

CONN_ID_PREFIX = "edc_static_callback_"
CONN_TYPE = "edc_static_callback"
_NAME = re.compile(r"^[a-z0-9]{1,64}$")

SettingsFormat = Literal["properties", "env"]


def default_vault_alias(name: str) -> str:
    """The vault alias of a registration's secret unless one is given: ``edc-static-callback-<name>``."""
    return f"edc-static-callback-{name}"


def check_name(name: str) -> str:
    """Check a static callback name: 1 to 64 lowercase letters or digits.

    EDC maps the environment variable ``EDC_CALLBACK_<NAME>_URI`` to ``edc.callback.<name>.uri`` by
    lowercasing and turning ``_`` into ``.``, so a name with ``_``, ``.`` or ``-`` could not be deployed
    through environment variables.

    :raises ValueError: the name has other characters.
    """
    if not _NAME.match(name):
        raise ValueError(f"Static callback name {name!r} must be 1 to 64 lowercase letters or digits")
    return name


@dataclass(frozen=True)
class StaticCallbackRegistration:
    """A registered static callback.

    :ivar name: the ``<name>`` in ``edc.callback.<name>.*`` and in ``/callbacks/static/<name>``.
    :ivar secret: the value the connector sends in ``auth_header`` (from its vault, alias ``vault_alias``).
    :ivar events: event name prefixes, e.g. ``("transfer.process",)`` (EDC matches with ``startsWith``).
    :ivar auth_header: the header name (``auth.key``).
    :ivar vault_alias: the connector's vault alias of the secret (``auth.codeid``).
    :ivar transactional: whether the connector calls it inside its transaction (default ``False``).
    """

    name: str
    secret: str = field(repr=False)
    events: tuple[str, ...]
    auth_header: str = DEFAULT_AUTH_HEADER
    vault_alias: str = ""
    transactional: bool = False

    @property
    def conn_id(self) -> str:
        return f"{CONN_ID_PREFIX}{self.name}"

    def callback_url(self, base_url: str) -> str:
        """The receiver URL of this callback under ``base_url`` (``[edc_callbacks] callback_base_url``)."""
        return f"{base_url.rstrip('/')}/callbacks/static/{self.name}"

    def to_extra(self) -> dict[str, Any]:
        """The connection ``extra`` that stores this registration (the secret is the password)."""
        return {
            "events": list(self.events),
            "auth_header": self.auth_header,
            "vault_alias": self.vault_alias,
            "transactional": self.transactional,
        }

    @classmethod
    def from_connection(cls, name: str, conn: Any) -> StaticCallbackRegistration:
        """Read a registration from its Airflow connection.

        :raises ValueError: the connection has no secret (password) or no events.
        """
        extra: Mapping[str, Any] = conn.extra_dejson or {}
        events = extra.get("events") or []
        if isinstance(events, str):
            events = [e.strip() for e in events.split(",") if e.strip()]
        if not conn.password or not events:
            raise ValueError(f"Connection {conn.conn_id!r} is not a static callback registration (password, events)")
        return cls(
            name=name,
            secret=conn.password,
            events=tuple(events),
            auth_header=extra.get("auth_header") or DEFAULT_AUTH_HEADER,
            vault_alias=extra.get("vault_alias") or default_vault_alias(name),
            transactional=bool(extra.get("transactional", False)),
        )


def connector_settings(
    registration: StaticCallbackRegistration, base_url: str, connector_version: str = "0.18.0"
) -> dict[str, str]:
    """The ``edc.callback.<name>.*`` settings for a connector of ``connector_version``.

    Versions before 0.17 get ``auth-key`` / ``auth-code-id``, later ones ``auth.key`` / ``auth.codeid``
    (EDC ``CallbackStaticEndpointExtension``, the same names from 0.11 to 0.16; see
    :mod:`~airflow_edc_callbacks.connector_versions`); nothing else differs.

    :raises ValueError: the version cannot be parsed.
    """
    names = profile(connector_version)
    prefix = f"edc.callback.{registration.name}."
    return {
        f"{prefix}uri": registration.callback_url(base_url),
        f"{prefix}events": ",".join(registration.events),
        f"{prefix}transactional": str(registration.transactional).lower(),
        f"{prefix}{names.static_auth_key}": registration.auth_header,
        f"{prefix}{names.static_auth_code_id}": registration.vault_alias,
    }


def render_settings(settings: Mapping[str, str], fmt: SettingsFormat = "properties") -> str:
    """Render settings as Java properties (``key=value``) or environment variables (``EDC_CALLBACK_...=``).

    :raises ValueError: ``env`` was asked for a key with ``-`` (the pre-0.17 ``auth-key`` names have no
        environment-variable form: use properties for those connectors).
    """
    lines = []
    for key, value in settings.items():
        if fmt == "properties":
            lines.append(f"{key}={value}")
        elif fmt == "env":
            if "-" in key:
                raise ValueError(f"{key} has no environment-variable form; use --format properties for EDC < 0.17")
            lines.append(f"{key.replace('.', '_').upper()}={value}")
        else:
            raise ValueError(f"Unknown format {fmt!r} (properties or env)")
    return "\n".join(lines) + "\n"


def lookup_registration(name: str) -> StaticCallbackRegistration | None:
    """The registration of ``name`` from Airflow's connections, or ``None`` if there is none.

    Uses Airflow core's lookup (environment, secrets backends, then the metastore), so it works in the
    api-server, the standalone receiver and the CLI; not inside a task.

    :raises ValueError: the name is invalid, or its connection is not a registration.
    """
    from airflow_edc_callbacks._compat import AirflowNotFoundException, connection_from_secrets

    check_name(name)
    try:
        conn = connection_from_secrets(f"{CONN_ID_PREFIX}{name}")
    except AirflowNotFoundException:
        return None
    return StaticCallbackRegistration.from_connection(name, conn)
