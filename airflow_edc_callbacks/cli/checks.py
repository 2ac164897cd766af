"""The checks of ``airflow-edc-callbacks doctor``: the event store, the signing key, ``callback_base_url``
(set, and a signed self-test event posted to it arrives in the store) and the ``edc`` connection.

Each check returns a :class:`Check`: its status (``ok``, ``warn``, ``fail``), what it found and, unless
it is ``ok``, the fix. No check raises.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from airflow_edc_callbacks.cli._common import reason, shown, store_name
from airflow_edc_callbacks.config import (
    SECTION,
    airflow_home,
    callback_base_url_fallback,
    get_callback_auth,
    get_callback_base_url,
    get_configured_signing_key,
)
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import SIGNING_KEY_FILE

Status = Literal["ok", "warn", "fail"]

SELF_TEST_PREFIX = "edc-callbacks-doctor-"
"""The correlation id, transfer process id and envelope id of every self-test event start with this: no
task's correlation id (32 hex characters) or connector's process id (a UUID) does, so no waiter acts on it."""

SELF_TEST_EVENT_TYPE = "TransferProcessDoctorSelfTest"
"""The self-test event's ``type``: a transfer process event (the receiver stores only those through a
dynamic callback address) of a type no EDC connector sends and no trigger waits for."""

KEY_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    :ivar name: what was checked, e.g. ``store``.
    :ivar status: ``ok``, ``warn`` (works here, but likely not as intended) or ``fail`` (broken).
    :ivar message: what the check found (no password, key or token in it).
    :ivar fix: what to do about a ``warn`` or ``fail``; empty for ``ok``.
    """

    name: str
    status: Status
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        """The check as a JSON object: ``name``, ``status``, ``message``, ``fix``."""
        return asdict(self)


def option(name: str) -> str:
    """``[edc_callbacks] <name>`` with the environment variable that sets it."""
    return f"[{SECTION}] {name} (AIRFLOW__{SECTION.upper()}__{name.upper()})"


# -- the store -----------------------------------------------------------------------------------------------
def _sqlite_path(url: str) -> Path | None:
    with contextlib.suppress(ArgumentError):
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            return Path(str(parsed.database))
    return None


def check_store(url: str) -> tuple[Check, EventStore | None]:
    """Open the store without creating or upgrading anything; compare its schema with this version's.

    :returns: the check, and the opened store (``None`` when it cannot be opened or does not exist yet).
    """
    from airflow_edc_callbacks.store.schema import current_revision, head_revision, known_revisions

    name = store_name(url)
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        return Check(
            "store",
            "warn",
            f"{name}: the SQLite file does not exist yet",
            "start the api-server (or `airflow-edc-callbacks serve`): the receiver creates it; "
            f"or set {option('store_url')} to the store the receiver uses",
        ), None
    try:
        store = EventStore(url, pool_size=0, migrate=False)
        revision = current_revision(store.engine)
    except (StoreUnavailableError, SQLAlchemyError, ArgumentError, ImportError, OSError) as err:
        return Check(
            "store",
            "fail",
            f"cannot open {name}: {reason(err, url)}",
            f"set {option('store_url')} to sqlite:///<path> or postgresql+psycopg://<user>:<password>@<host>/<db> "
            "(PostgreSQL needs the [postgres] extra) and make the database reachable from here",
        ), None
    head = head_revision()
    if revision == head:
        return Check("store", "ok", f"{name}: opens; schema at revision {head} (current)"), store
    if revision is None:
        return Check(
            "store",
            "warn",
            f"{name}: opens, but holds no tables of this provider yet",
            "start the api-server or a triggerer (or run `airflow-edc-callbacks events` once): they create them",
        ), store
    if revision in known_revisions():
        return Check(
            "store",
            "warn",
            f"{name}: schema at revision {revision}, this version expects {head}",
            "restart the api-server or a triggerer (or run `airflow-edc-callbacks events`): they upgrade it",
        ), store
    return Check(
        "store",
        "fail",
        f"{name}: schema at revision {shown(revision)}, unknown to this version (head {head}): "
        "a newer airflow-edc-callbacks wrote it",
        "install the same airflow-edc-callbacks version here as on the api-server and triggerers",
    ), store


# -- the signing key -----------------------------------------------------------------------------------------
def check_signing_key() -> Check:
    """``callback_signing_key`` set, or the generated key file that only processes sharing AIRFLOW_HOME share."""
    fix = (
        f"set {option('callback_signing_key')} to the same random value for the api-server, the workers, the "
        f"triggerers and this command, e.g. from `{KEY_HINT}`"
    )
    configured = get_configured_signing_key()
    if configured:
        keys = [k for k in configured.split(",") if k.strip()]
        older = f"; {len(keys) - 1} older key(s) still verify" if len(keys) > 1 else ""
        if len(keys[0].strip()) < 16:
            return Check("signing key", "warn", "callback_signing_key is set but shorter than 16 characters", fix)
        return Check("signing key", "ok", f"callback_signing_key is set{older}")
    path = airflow_home() / SIGNING_KEY_FILE
    where = "the key generated in" if path.exists() else "a key to be generated on first use in"
    return Check(
        "signing key",
        "warn",
        f"callback_signing_key is not set: tokens are signed with {where} {path}, which only processes "
        "sharing this AIRFLOW_HOME share (a receiver on another host answers their callbacks 404)",
        fix,
    )


# -- callback_base_url ---------------------------------------------------------------------------------------
def check_callback_base_url() -> Check:
    """``callback_base_url`` set, or the ``[api] base_url`` it falls back to."""
    fallback = callback_base_url_fallback()
    if fallback is not None:
        return Check(
            "callback_base_url",
            "warn",
            f"not set: connectors are told to call back {fallback} ([api] base_url + /edc-callbacks)",
            f"set {option('callback_base_url')} to the receiver's URL as the connector reaches it",
        )
    return Check("callback_base_url", "ok", f"set: {get_callback_base_url()}")


def _health(client: httpx.Client, base: str) -> str | None:
    """Why ``GET <base>/health`` shows no receiver of this provider, or ``None`` when it does."""
    try:
        response = client.get(f"{base}/health")
    except httpx.HTTPError as err:
        return f"cannot reach {base}: {shown(str(err) or type(err).__name__)}"
    with contextlib.suppress(ValueError):
        if response.status_code == 200 and response.json().get("status") == "ok":
            return None
    return f"no receiver of this provider at {base} (GET /health answered {response.status_code})"


_REFUSED: dict[int, tuple[str, str]] = {
    404: (
        "refused the signed self-test event (404: the token does not verify): the receiver has another signing key",
        f"set {option('callback_signing_key')} to one value for the api-server (or receiver) and this command",
    ),
    401: (
        "refused the self-test event (401): the callback auth header is missing or wrong",
        f"set {option('callback_auth_secret')} and callback_auth_header to the receiver's values",
    ),
    503: (
        "cannot write to its event store (503)",
        "check the receiver's store_url and that its database is reachable from the api-server",
    ),
}


def self_test(url: str, timeout: float) -> Check:
    """POST a signed self-test event to ``<callback_base_url>/callbacks/<token>`` and wait up to ``timeout``
    seconds for it in the store at ``url``; delete it afterwards.

    The event (:data:`SELF_TEST_EVENT_TYPE`, ids starting with :data:`SELF_TEST_PREFIX`) is about a transfer
    process no connector has, under a correlation id no task has: no waiter acts on it.
    """
    from airflow_edc_callbacks.tokens import callback_url

    base = get_callback_base_url()
    name = "callback self-test"
    fix_url = f"set {option('callback_base_url')} to the URL of the receiver that writes to this store"
    marker = f"{SELF_TEST_PREFIX}{uuid.uuid4().hex}"
    body = {
        "id": marker,
        "at": int(time.time() * 1000),
        "type": SELF_TEST_EVENT_TYPE,
        "payload": {"transferProcessId": marker, "type": "CONSUMER"},
    }
    auth = get_callback_auth()
    headers = {auth[0]: auth[1]} if auth else {}
    started = time.monotonic()
    with httpx.Client(timeout=min(timeout, 10.0), follow_redirects=False) as client:
        unhealthy = _health(client, base)
        if unhealthy is not None:
            return Check(name, "fail", unhealthy, fix_url)
        try:
            response = client.post(callback_url(marker), json=body, headers=headers)
        except httpx.HTTPError as err:
            return Check(name, "fail", f"cannot post to {base}: {shown(str(err) or type(err).__name__)}", fix_url)
    if response.status_code in _REFUSED:
        found, fix = _REFUSED[response.status_code]
        return Check(name, "fail", f"the receiver at {base} {found}", fix)
    if response.status_code != 200:
        return Check(name, "fail", f"the receiver at {base} answered {response.status_code}", fix_url)
    store = _wait_for(url, marker, started + timeout)
    if store is None:
        return Check(
            name,
            "fail",
            f"the receiver at {base} took the self-test event but it did not arrive in {store_name(url)} "
            f"within {timeout:g} s: that receiver writes to another store",
            f"{fix_url}, or set {option('store_url')} here to the receiver's",
        )
    elapsed = int((time.monotonic() - started) * 1000)
    try:
        store.forget(marker)
    except StoreUnavailableError as err:
        return Check(
            name,
            "warn",
            f"a signed event posted to {base} arrived in the store ({elapsed} ms) but cannot be removed: "
            f"{reason(err, url)}",
            f"nothing waits for it; `airflow-edc-callbacks purge` removes it after {option('retention')}",
        )
    finally:
        store.dispose()
    return Check(name, "ok", f"a signed event posted to {base} arrived in the store ({elapsed} ms; removed again)")


def _wait_for(url: str, marker: str, deadline: float) -> EventStore | None:
    """The store at ``url`` once it holds the self-test event ``marker``; ``None`` if not by ``deadline``."""
    store: EventStore | None = None
    try:
        while True:
            with contextlib.suppress(StoreUnavailableError, SQLAlchemyError):
                store = store or EventStore(url, pool_size=0, migrate=False)
                if store.events(correlation_id=marker, limit=1):
                    found, store = store, None
                    return found
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)  # polling: this process has no listener on the store
    finally:
        if store is not None:
            store.dispose()
