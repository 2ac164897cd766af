"""Redaction of secrets from everything people read: CLI listings, access logs, error lines.

What counts as a secret:

* the value of a JSON key whose term (the part after any JSON-LD prefix or IRI: ``edc:authorization``,
  ``https://w3id.org/tractusx/auth/refreshToken``) ends with ``authorization``, ``token``, ``secret``,
  ``password``, ``authCode``, ``apiKey`` (``api_key``, ``x-api-key``), ``credentials``, ``privateKey``
  (``private_key``), ``accessKey``, ``signature`` or is ``sas`` / ``sig``, in any case or separator
  style (see :func:`is_secret_key`);
* in any text, the signature of a dynamic callback token in a callback URI
  (``/callbacks/<correlation id>.<signature>`` becomes ``/callbacks/<correlation id>.***``), the value of
  a signed or secret query parameter (``sig``, ``signature``, ``X-Amz-Signature``, ``X-Goog-Signature``,
  ``token``, ``access_token``, ``code``, ...; an Azure SAS ``sv=...&sig=...`` loses its ``sig``) and JWTs
  (``eyJ...`` becomes ``eyJ***``, as Airflow's own log redaction does).

:func:`redact_tokens` walks JSON documents iteratively, so a body nested deeper than Python's recursion
limit (stores written by older versions may hold one) is handled; containers deeper than
:data:`~airflow_edc_callbacks.models.MAX_JSON_DEPTH` are cut to :data:`CUT`.

:class:`AccessLogRedactionFilter` rewrites uvicorn's and gunicorn's access-log records;
:class:`RedactPathMiddleware` redacts the request path in the ASGI scope once the response starts, which is
where Airflow's api-server (``HttpAccessLogMiddleware``, a structlog logger, not the ``uvicorn.access``
logger) and uvicorn read it for their access lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any

from airflow_edc_callbacks.models import MAX_JSON_DEPTH

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

REDACTED = "***"
"""What a secret is replaced by."""

_QUOTED_REDACTED = "%2A%2A%2A"

CUT = f"<cut: nested deeper than {MAX_JSON_DEPTH} levels>"
"""What :func:`redact_tokens` puts in place of a container nested deeper than ``MAX_JSON_DEPTH``."""

ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
"""The stdlib loggers access lines are written to (uvicorn's own, gunicorn's)."""

# A key holds a secret when its term, split into words and joined, ends with one of these ...
_SECRET_ENDINGS = (
    "authorization",
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwd",
    "passphrase",
    "authcode",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "credentials",
    "signature",
)
# ... or its last word is one of these ...
_SECRET_WORDS = frozenset({"sas", "sig", "pwd"})
# ... unless its last word says it names a secret rather than holds it (authCodeId, tokenType, secretAlias).
_NAMING_WORDS = frozenset({"id", "alias", "type", "header", "name", "url", "uri", "endpoint", "expiry", "expires"})
# Trailing words that only say how the secret is written (privateKeyPem, secretValue) are ignored.
_CARRIER_WORDS = frozenset({"value", "values", "data", "string", "str", "text", "b64", "base64", "pem", "hex", "raw"})
# Query parameters that carry a secret although their name alone would not say so to is_secret_key.
_SECRET_QUERY_NAMES = frozenset({"code", "key", "sig", "x-amz-credential", "x-goog-credential"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

_CALLBACK_URI = re.compile(
    r"(?P<head>(?:/|%2[Ff]|\\/)(?i:callbacks)(?:/|%2[Ff]|\\/))"
    r"(?P<correlation>(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){1,384})"
    r"(?:\.|%2[Ee])"
    r"[A-Za-z0-9_\-=+]+"  # base64url, and whatever else of base64 a client may have added
)
_QUERY_PARAMETER = re.compile(
    r"(?P<head>(?:[?&;]|%3[Ff]|%26)(?P<name>[A-Za-z0-9_.\-]{1,64})(?:=|%3[Dd]))"
    r"(?P<value>(?:[^&#;%\s\"'<>\\]|%(?!26|3[Bb])[0-9A-Fa-f]{2})+)"
)
# a JWT starts a run of base64url characters: from any other "eyJ" inside a run, a scan to the run's end
# would be tried again ("eyJeyJeyJ...": quadratic time, minutes for one 1 MiB string or seconds for a path)
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def _term(key: str) -> str:
    return re.split(r"[/#:]", key)[-1]


def is_secret_key(key: str) -> bool:
    """Whether the value of JSON key ``key`` is a secret (see the module documentation).

    The term after any JSON-LD prefix or IRI is split into words (``refreshToken``, ``refresh_token``,
    ``X-Refresh-Token`` all give ``refresh token``); it is a secret when the joined words end with a
    secret word (``token``, ``secret``, ``apikey``, ...) or the last word is ``sas`` or ``sig``, unless the
    last word names the secret instead of holding it (``authCodeId``, ``tokenType``, ``secretAlias``).
    """
    words = [w.lower() for w in _WORD.findall(_term(key))]
    while len(words) > 1 and words[-1] in _CARRIER_WORDS:
        words.pop()
    if not words or (len(words) > 1 and words[-1] in _NAMING_WORDS):
        return False
    joined = "".join(words)
    return joined.endswith(_SECRET_ENDINGS) or words[-1] in _SECRET_WORDS


def _is_secret_query_name(name: str) -> bool:
    return name.lower() in _SECRET_QUERY_NAMES or is_secret_key(name)


def _redact_query_parameter(match: re.Match[str]) -> str:
    if _is_secret_query_name(match["name"]):
        return f"{match['head']}{REDACTED}"
    return match[0]


def redact_text(text: str) -> str:
    """``text`` (a log line, a path, a URL, any string value) with its secrets replaced by ``***``.

    Replaces the signature of callback tokens in callback URIs (``/callbacks/<id>.<signature>``, also
    percent-encoded or JSON-escaped), the values of secret query parameters after ``?``, ``&`` or ``;``
    (also percent-encoded) and JWTs. Never raises; returns ``text`` itself when there is nothing to redact.
    """
    text = _CALLBACK_URI.sub(lambda m: f"{m['head']}{m['correlation']}.{REDACTED}", text)
    if "=" in text or "%3" in text:
        text = _QUERY_PARAMETER.sub(_redact_query_parameter, text)
    if "eyJ" in text:
        text = _JWT.sub(f"eyJ{REDACTED}", text)
    return text


def _secret_entry_name(mapping: Mapping[Any, Any]) -> bool:
    """Whether ``mapping`` is a name/value pair naming a secret: ``{"name": "Authorization", "value": ...}``."""
    for naming in ("name", "key"):
        name = mapping.get(naming)
        if isinstance(name, str) and is_secret_key(name):
            return True
    return False


def redact_tokens(value: Any) -> Any:
    """A copy of a JSON document for output people read, with every secret replaced by ``***``.

    * the value of every key :func:`is_secret_key` calls secret (an EDR's ``authorization``,
      ``authCode``, Tractus-X's ``tx-auth:refreshToken``, in any JSON-LD form of the key), unless it is
      empty; also ``value`` in a ``{"name": <secret key>, "value": ...}`` pair;
    * secrets in every string, keys included (:func:`redact_text`): callback token signatures, signed
      query strings, JWTs;
    * every object or array nested deeper than ``MAX_JSON_DEPTH`` (the document itself is depth 1) is
      replaced by :data:`CUT`.

    Iterative (no recursion): any nesting depth is handled. Tuples come back as lists; values that are
    not JSON types are returned as they are.
    """
    root: list[Any] = [None]
    pending: list[tuple[Any, MutableMapping[Any, Any] | MutableSequence[Any], Any, int]] = [(value, root, 0, 1)]
    while pending:
        source, target, slot, depth = pending.pop()
        if isinstance(source, str):
            target[slot] = redact_text(source)
        elif isinstance(source, Mapping):
            if depth > MAX_JSON_DEPTH:
                target[slot] = CUT
                continue
            copy: dict[Any, Any] = {}
            target[slot] = copy
            pair = _secret_entry_name(source)
            for key, item in source.items():
                shown = redact_text(key) if isinstance(key, str) else key
                if item and (is_secret_key(str(key)) or (pair and key in ("value", "@value"))):
                    copy[shown] = REDACTED
                else:
                    copy[shown] = None
                    pending.append((item, copy, shown, depth + 1))
        elif isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
            if depth > MAX_JSON_DEPTH:
                target[slot] = CUT
                continue
            items: list[Any] = [None] * len(source)
            target[slot] = items
            pending.extend((item, items, index, depth + 1) for index, item in enumerate(source))
        else:
            target[slot] = source
    return root[0]


class AccessLogRedactionFilter(logging.Filter):
    """Applies :func:`redact_text` to the message and the string arguments of every record it sees.

    uvicorn's access records carry the path in their arguments (``'%s - "%s %s HTTP/%s" %d'``), gunicorn's
    in a dictionary of atoms; both shapes are kept. uvicorn percent-encodes the path it logs, so a path
    :class:`RedactPathMiddleware` already redacted shows ``%2A%2A%2A``: that is shown as ``***`` again.
    Never drops a record.
    """

    @staticmethod
    def _redacted(value: Any) -> Any:
        return redact_text(value).replace(_QUOTED_REDACTED, REDACTED) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redacted(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: self._redacted(v) for k, v in record.args.items()}
        return True


def install_access_log_filter(logger_names: Sequence[str] = ACCESS_LOGGERS) -> None:
    """Add an :class:`AccessLogRedactionFilter` to each named logger that has none yet (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, AccessLogRedactionFilter) for f in logger.filters):
            logger.addFilter(AccessLogRedactionFilter())


class RedactPathMiddleware:
    """ASGI middleware: redacts ``path``, ``raw_path`` and ``query_string`` of the request's scope in place
    when the response starts (routing is done by then) and when the app returns.

    Access loggers read the path from the scope after that: uvicorn when it sends the response start, the
    Airflow api-server's ``HttpAccessLogMiddleware`` when the request is finished. Starlette passes one scope
    object down through middlewares, routers and mounted apps, so the outer loggers see the change.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_redacted(message: Message) -> None:
            if message["type"] == "http.response.start":
                _redact_scope(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_redacted)
        finally:
            _redact_scope(scope)


def _redact_scope(scope: MutableMapping[str, Any]) -> None:
    path = scope.get("path")
    if isinstance(path, str):
        scope["path"] = redact_text(path)
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        scope["raw_path"] = redact_text(raw_path.decode("latin-1")).encode("latin-1")
    query = scope.get("query_string")
    if isinstance(query, bytes) and query:
        scope["query_string"] = redact_text("?" + query.decode("latin-1"))[1:].encode("latin-1")
