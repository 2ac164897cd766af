"""Callback tokens: the unguessable, unforgeable last path segment of a dynamic callback address.

A token is ``<correlation id>.<signature>``: the signature is HMAC-SHA256 of the correlation id under
the signing key (:func:`airflow_edc_callbacks.config.get_signing_key`), base64url without padding. The
receiver accepts a token only when its signature verifies, so nobody without the key can make the
receiver store an event, and a task's correlation id cannot be used to forge its callbacks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from airflow_edc_callbacks.config import airflow_home, get_callback_base_url, get_configured_signing_key
from airflow_edc_callbacks.exceptions import EdcCallbacksError

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "edc_callbacks_signing.key"

_CORRELATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DOMAIN = b"airflow-edc-callbacks/token/v1:"


def _signature(key: bytes, correlation_id: str) -> str:
    digest = hmac.new(key, _DOMAIN + correlation_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(key: bytes, correlation_id: str) -> str:
    """Sign ``correlation_id`` (letters, digits, ``_``, ``-``; 1 to 128 characters).

    :raises ValueError: the correlation id has other characters or another length.
    """
    if not _CORRELATION_ID.match(correlation_id):
        raise ValueError(f"Correlation id {correlation_id!r} must be 1 to 128 letters, digits, '_' or '-'")
    return f"{correlation_id}.{_signature(key, correlation_id)}"


def verify_token(keys: bytes | Sequence[bytes], token: str) -> str | None:
    """Return the correlation id of a token signed with ``keys`` (one key, or the current key and older
    ones during a rotation), or ``None``. Constant-time comparison with every key."""
    correlation_id, sep, signature = token.partition(".")
    if not sep or not _CORRELATION_ID.match(correlation_id):
        return None
    candidates = [keys] if isinstance(keys, bytes) else list(keys)
    valid = False
    for key in candidates:  # no early exit: the time does not tell which key matched
        valid |= hmac.compare_digest(signature.encode(), _signature(key, correlation_id).encode())
    return correlation_id if valid else None


def correlation_id_for(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """A stable correlation id for one task instance (the same on every try).

    Stable across tries so that a retry after a worker crash finds the transfer process the first try
    started (design-brief guarantee 8). 32 hex characters of SHA-256 of the task instance key.
    """
    key = "\x1f".join((dag_id, run_id, task_id, str(-1 if map_index is None else map_index)))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _configured_keys() -> list[bytes]:
    value = get_configured_signing_key()
    return [key.strip().encode() for key in value.split(",") if key.strip()] if value else []


def get_verification_keys() -> list[bytes]:
    """Every key a callback token may be signed with: the signing key first, then the older keys.

    ``[edc_callbacks] callback_signing_key`` takes a comma-separated list: the first key signs new tokens,
    every key verifies. To rotate, put the new key first and keep the old one behind it until no task
    that got a token signed with it still waits (the longest ``timeout`` of your transfers), then drop it.
    """
    return _configured_keys() or [get_signing_key()]


def get_signing_key() -> bytes:
    """The key that signs callback tokens.

    The first key of ``[edc_callbacks] callback_signing_key`` when set (see
    :func:`get_verification_keys` for rotation). Otherwise a random key generated once and kept in
    ``AIRFLOW_HOME/edc_callbacks_signing.key`` (mode 0600); that only works when the api-server, the
    workers and the triggerer share ``AIRFLOW_HOME``, so a warning says that several hosts must share one
    configured key.

    :raises EdcCallbacksError: the key file exists but stays empty.
    """
    keys = _configured_keys()
    if keys:
        return keys[0]
    path = airflow_home() / SIGNING_KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return _read_key(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    log.warning(
        "[edc_callbacks] callback_signing_key is not set: generated a key in %s. Every host that runs "
        "the api-server, workers or triggerers must share one key; set callback_signing_key there.",
        path,
    )
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    for _ in range(50):  # the creator may not have written it yet
        data = path.read_text().strip()
        if data:
            return data.encode()
        time.sleep(0.01)
    raise EdcCallbacksError(f"Signing key file {path} is empty; delete it to have a new key generated")


def callback_url(correlation_id: str) -> str:
    """The dynamic callback address for ``correlation_id``: ``<callback_base_url>/callbacks/<token>``."""
    return f"{get_callback_base_url()}/callbacks/{make_token(get_signing_key(), correlation_id)}"


def correlation_id_of_callback_url(url: str) -> str | None:
    """The correlation id of a dynamic callback address this deployment signed, or ``None`` for any other
    URL (another receiver's, a forged or retired token). Verifies with every key of
    :func:`get_verification_keys`."""
    _, sep, token = url.rstrip("/").rpartition("/callbacks/")
    if not sep or "/" in token:
        return None
    return verify_token(get_verification_keys(), token)
