"""``EdcStaticCallbackHook``: register, read, list and remove static callback registrations.

See :mod:`airflow_edc_callbacks.static_callbacks` for what a registration is and the connector settings.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseHook

from airflow_edc_callbacks.config import DEFAULT_AUTH_HEADER
from airflow_edc_callbacks.models import check_callback_events
from airflow_edc_callbacks.static_callbacks import (
    CONN_ID_PREFIX,
    CONN_TYPE,
    StaticCallbackRegistration,
    check_name,
    connector_settings,
    default_vault_alias,
    lookup_registration,
    render_settings,
)

__all__ = ["EdcStaticCallbackHook", "StaticCallbackRegistration", "connector_settings", "render_settings"]


class EdcStaticCallbackHook(BaseHook):
    """Register, read, list and remove static callback registrations (Airflow connections).

    Reading works where Airflow's core resolves connections (environment, secrets backends, metastore:
    the api-server, the standalone receiver, the CLI). Writing (:meth:`register`, :meth:`unregister`,
    :meth:`list_registrations`) uses the metastore, so it runs where the Airflow database is reachable
    (the CLI, the api-server), not inside a task.
    """

    conn_type = CONN_TYPE
    hook_name = "EDC static callback"

    def __init__(self) -> None:
        super().__init__()

    def get_registration(self, name: str) -> StaticCallbackRegistration | None:
        """The registration of ``name``, or ``None`` if there is none (see :func:`lookup_registration`).

        :raises ValueError: the name is invalid, or its connection is not a registration.
        """
        return lookup_registration(name)

    def register(
        self,
        name: str,
        events: Sequence[str],
        *,
        auth_header: str | None = None,
        vault_alias: str | None = None,
        rotate: bool = False,
    ) -> StaticCallbackRegistration:
        """Create the registration of ``name`` or update it; a new secret only when new or ``rotate``.

        Writes the metastore connection ``edc_static_callback_<name>``. A registration kept in a
        secrets backend or an environment variable must be changed there instead.

        :param events: event name prefixes, e.g. ``["transfer.process", "contract.negotiation"]``.
        :param auth_header: header name; ``None`` keeps the registered one (default ``X-Edc-Callback-Auth``).
        :param vault_alias: vault alias; ``None`` keeps the registered one (default ``edc-static-callback-<name>``).
        :raises ValueError: bad name, or no or an empty event prefix (EDC requires the ``events`` setting
            and matches by prefix: an empty ``edc.callback.<name>.events`` subscribes to every event of
            the runtime; see :func:`~airflow_edc_callbacks.models.check_callback_events`).
        :raises sqlalchemy.exc.SQLAlchemyError: the metastore cannot be written.
        """
        check_name(name)
        events = check_callback_events(events)
        existing = self.get_registration(name)
        secret = existing.secret if existing and not rotate else secrets.token_urlsafe(32)
        registration = StaticCallbackRegistration(
            name=name,
            secret=secret,
            events=events,
            auth_header=auth_header or (existing.auth_header if existing else DEFAULT_AUTH_HEADER),
            vault_alias=vault_alias or (existing.vault_alias if existing else default_vault_alias(name)),
        )
        _save_connection(registration)
        return registration

    def unregister(self, name: str) -> bool:
        """Delete the registration's connection from the metastore; ``False`` if there was none.

        :raises sqlalchemy.exc.SQLAlchemyError: the metastore cannot be written.
        """
        from airflow.models import Connection
        from airflow.utils.session import create_session

        check_name(name)
        with create_session() as session:
            deleted = session.query(Connection).filter(Connection.conn_id == f"{CONN_ID_PREFIX}{name}").delete()
        return bool(deleted)

    def list_registrations(self) -> list[str]:
        """Names of the registrations in the metastore.

        :raises sqlalchemy.exc.SQLAlchemyError: the metastore cannot be read.
        """
        from airflow.models import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            rows: list[Any] = (
                session.query(Connection.conn_id).filter(Connection.conn_id.startswith(CONN_ID_PREFIX)).all()
            )
        return sorted(row[0][len(CONN_ID_PREFIX) :] for row in rows)


def _save_connection(registration: StaticCallbackRegistration) -> None:
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        conn = session.query(Connection).filter(Connection.conn_id == registration.conn_id).one_or_none()
        if conn is None:
            conn = Connection(conn_id=registration.conn_id, conn_type=CONN_TYPE)
            session.add(conn)
        conn.password = registration.secret
        conn.extra = json.dumps(registration.to_extra())
        conn.description = f"EDC static callback {registration.name} (airflow-edc-callbacks)"  # type: ignore[assignment]
