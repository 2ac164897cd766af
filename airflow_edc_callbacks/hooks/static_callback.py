"""``EdcStaticCallbackHook``: register, read, list and remove static callback registrations.

See :mod:`airflow_edc_callbacks.static_callbacks` for what a registration is and the connector settings.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
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
    default_vault_alias,
    lookup_registration,
)


class AirflowCommandError(RuntimeError):
    """An ``airflow connections ...`` command failed; the message names it and ends with Airflow's own.

    :ivar returncode: the command's exit status.
    """

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        self.returncode = returncode
        tail = "\n".join(output.strip().splitlines()[-5:]) or "no output"
        super().__init__(f"`airflow {' '.join(args)}` failed (exit {returncode}): {tail}")


def _airflow(*args: str) -> str:
    """Run ``airflow <args>`` with this interpreter's Airflow and environment; its stdout.

    :raises AirflowCommandError: the command exited non-zero.
    """
    done = subprocess.run(
        [sys.executable, "-m", "airflow", *args], capture_output=True, text=True, check=False, env=os.environ.copy()
    )
    if done.returncode != 0:
        raise AirflowCommandError(args, done.returncode, done.stderr or done.stdout)
    return done.stdout


class EdcStaticCallbackHook(BaseHook):
    """Register, read, list and remove static callback registrations (Airflow connections).

    Reading works where Airflow's core resolves connections (environment, secrets backends, metastore:
    the api-server, the standalone receiver, the CLI), through ``BaseHook.get_connection``. Writing
    (:meth:`register`, :meth:`unregister`) and :meth:`list_registrations` go through Airflow's public
    command line, ``airflow connections import --overwrite`` / ``delete`` / ``list``, run with this
    interpreter and environment: the provider touches neither Airflow's ORM models nor its database
    session, so a registration is validated and stored exactly as one an administrator adds by hand
    (and as Airflow changes its metastore, the command follows). The new secret goes to the command in
    a file only its owner can read, never on a command line. This runs where ``airflow connections``
    works (the CLI host, the api-server), not inside a task.
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

        Writes the metastore connection ``edc_static_callback_<name>`` with ``airflow connections import
        --overwrite``. A registration kept in a secrets backend or an environment variable must be changed
        there instead.

        :param events: event name prefixes, e.g. ``["transfer.process", "contract.negotiation"]``.
        :param auth_header: header name; ``None`` keeps the registered one (default ``X-Edc-Callback-Auth``).
        :param vault_alias: vault alias; ``None`` keeps the registered one (default ``edc-static-callback-<name>``).
        :raises ValueError: bad name, or no or an empty event prefix (EDC requires the ``events`` setting
            and matches by prefix: an empty ``edc.callback.<name>.events`` subscribes to every event of
            the runtime; see :func:`~airflow_edc_callbacks.models.check_callback_events`).
        :raises AirflowCommandError: ``airflow connections import`` failed (e.g. no metastore).
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
        """Delete the registration's metastore connection (``airflow connections delete``); ``False`` if
        there was none.

        :raises AirflowCommandError: an ``airflow connections`` command failed.
        """
        check_name(name)
        if name not in self.list_registrations():
            return False
        _airflow("connections", "delete", f"{CONN_ID_PREFIX}{name}")
        return True

    def list_registrations(self) -> list[str]:
        """Names of the registrations in the metastore (``airflow connections list -o json``: ids only).

        :raises AirflowCommandError: the command failed.
        """
        rows = _json_list(_airflow("connections", "list", "--output", "json"))
        ids = [str(row.get("conn_id", "")) for row in rows if isinstance(row, dict)]
        return sorted(conn_id[len(CONN_ID_PREFIX) :] for conn_id in ids if conn_id.startswith(CONN_ID_PREFIX))


def _json_list(output: str) -> list[Any]:
    """The JSON array an ``airflow ... --output json`` command printed, skipping any line before it (an
    Airflow version may print a notice first); ``[]`` when it printed none."""
    lines = output.splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith("["):
            try:
                found = json.loads("\n".join(lines[start:]))
            except ValueError:
                continue
            if isinstance(found, list):
                return found
    return []


def _save_connection(registration: StaticCallbackRegistration) -> None:
    """Create or replace the registration's connection with ``airflow connections import --overwrite``.

    :raises AirflowCommandError: the command failed.
    """
    connection = {
        "conn_type": CONN_TYPE,
        "password": registration.secret,
        "extra": json.dumps(registration.to_extra()),
        "description": f"EDC static callback {registration.name} (airflow-edc-callbacks)",
    }
    handle, path = tempfile.mkstemp(prefix="edc-static-callback-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(handle, "w") as out:
            json.dump({registration.conn_id: connection}, out)
        _airflow("connections", "import", path, "--overwrite")
    finally:
        os.unlink(path)
