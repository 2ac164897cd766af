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
import re

__all__ = ["correlation_id_for", "make_token", "verify_token"]

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


def verify_token(key: bytes, token: str) -> str | None:
    """Return the correlation id of a token signed with ``key``, or ``None`` (constant-time comparison)."""
    correlation_id, sep, signature = token.partition(".")
    if not sep or not _CORRELATION_ID.match(correlation_id):
        return None
    if not hmac.compare_digest(signature.encode(), _signature(key, correlation_id).encode()):
        return None
    return correlation_id


def correlation_id_for(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """A stable correlation id for one task instance (the same on every try).

    Stable across tries so that a retry after a worker crash finds the transfer process the first try
    started (design-brief guarantee 8). 32 hex characters of SHA-256 of the task instance key.
    """
    key = "\x1f".join((dag_id, run_id, task_id, str(map_index)))
    return hashlib.sha256(key.encode()).hexdigest()[:32]
