"""The ``airflow-edc-callbacks`` command: serve the receiver, inspect and purge stored events, make URLs,
terminate a transfer or negotiation.

Results go to standard output, everything else (Airflow's and Alembic's log lines, notes, errors) to
standard error, so ``airflow-edc-callbacks events --json | python -m json.tool`` works.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from airflow_edc_callbacks.config import (
    DEFAULT_CONN_ID,
    get_callback_base_url,
    get_retention,
    get_store_url,
    parse_duration,
)
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.models import iso_from_epoch_ms
from airflow_edc_callbacks.receiver.server import ServerLimits
from airflow_edc_callbacks.redaction import redact_text, redact_tokens
from airflow_edc_callbacks.store import EventStore, StoredEvent, get_store
from airflow_edc_callbacks.tokens import get_signing_key

__all__ = ["build_parser", "main"]

PROG = "airflow-edc-callbacks"

_READ_RECURSION_LIMIT = 5000
"""Python's recursion limit while ``events`` reads: stores written by older versions may hold bodies nested
about 1000 deep, which the JSON decoder of Python 3.11 cannot read under the default limit of 1000."""


class _Failure(Exception):
    """A failure the command reports in one line on standard error, with exit status 1."""


def _positive(kind: Callable[[str], int]) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its "invalid ... value" message
    return parse


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _escaped(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if ch.isprintable():  # False for control, format, surrogate and separator characters but the space
        return ch
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def _shown(text: str) -> str:
    """``text`` for a terminal: secrets redacted; backslashes, control and format characters escaped
    (``\\r``, ``\\x1b``, ``\\u202e``), so a stored value cannot move the cursor or fake a line."""
    return "".join(_escaped(ch) for ch in redact_text(text))


def _store_name(url: str) -> str:
    """The store URL without its password, for messages."""
    try:
        return _shown(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "<not a SQLAlchemy URL>"


def _reason(err: BaseException, url: str) -> str:
    """The first line of what went wrong (the driver's message), without the URL's password."""
    cause = err.__cause__ or err
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    with contextlib.suppress(ArgumentError):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return _shown(text)


def _store(url: str | None) -> EventStore:
    """The event store, or :class:`_Failure` naming it when it cannot be opened."""
    url = url or get_store_url()
    try:
        return get_store(url)
    except (StoreUnavailableError, ArgumentError, ImportError) as err:  # ImportError: no database driver
        raise _Failure(f"cannot open the event store {_store_name(url)}: {_reason(err, url)}") from err


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While in the block, ``sys.stdout`` is standard error, and so is the stream of every logging handler
    that wrote to standard output (Airflow's, when something configured it before)."""
    stdout_streams = {id(sys.stdout), id(sys.__stdout__)}
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values())]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in stdout_streams:
                moved.append((handler, handler.setStream(sys.stderr)))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for handler, stream in reversed(moved):
            handler.setStream(stream)


@contextlib.contextmanager
def _recursion_headroom(limit: int) -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from airflow_edc_callbacks import metrics
    from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
    from airflow_edc_callbacks.receiver.server import build_server

    metrics.initialize_from_config()  # the api-server does this itself; this process is ours
    settings = ReceiverSettings(store_url=args.store_url, body_timeout=args.body_timeout).resolve()
    limits = ServerLimits(
        keep_alive_timeout=args.keep_alive_timeout,
        header_timeout=args.header_timeout,
        max_header_bytes=args.max_header_bytes,
        limit_concurrency=args.limit_concurrency or None,
        backlog=args.backlog,
    )
    server = build_server(create_app(settings), host=args.host, port=args.port, limits=limits, log_level=args.log_level)
    print(
        f"{PROG} serve: store {_store_name(settings.store_url or '')}; keep-alive {limits.keep_alive_timeout} s, "
        f"header timeout {limits.header_timeout:g} s, max header bytes {limits.max_header_bytes}, "
        f"body timeout {settings.body_timeout:g} s, limit concurrency {limits.limit_concurrency or 'none'}, "
        f"backlog {limits.backlog}",
        file=sys.stderr,
    )
    server.run()
    return 0 if server.started else 1


def _event_json(e: StoredEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "id": redact_text(e.envelope_id),
        "type": redact_text(e.event_type),
        "process_id": redact_text(e.process_id) if e.process_id is not None else None,
        "correlation_id": redact_text(e.correlation_id) if e.correlation_id is not None else None,
        "at": e.event_at,
        "received_at": e.received_at,
        "routes": [redact_text(r) for r in e.routes],
        "body": redact_tokens(e.body),
    }


def _event_line(e: StoredEvent) -> str:
    return (
        f"{iso_from_epoch_ms(e.received_at)}  {_shown(e.event_type):<36} {_shown(e.process_id or '-'):<38} "
        f"at={iso_from_epoch_ms(e.event_at)} id={_shown(e.envelope_id)} via={_shown(','.join(e.routes))}"
    )


def _events(args: argparse.Namespace, out: TextIO) -> int:
    store = _store(args.store_url)
    name = _store_name(store.url)
    correlation_id = args.token.partition(".")[0] if args.token else None
    newest_first = args.tail is not None
    order = "newest first" if newest_first else "oldest first"
    try:
        with _recursion_headroom(_READ_RECURSION_LIMIT):
            events = store.events(
                correlation_id=correlation_id,
                process_id=args.process_id,
                limit=args.tail if newest_first else args.limit,
                newest_first=newest_first,
            )
    except StoreUnavailableError as err:
        raise _Failure(f"cannot read the event store {name}: {_reason(err, store.url)}") from err
    except RecursionError as err:
        raise _Failure(f"cannot read the event store {name}: an event body is nested too deeply to decode") from err
    if args.json:
        print(f"{len(events)} event(s) from the event store {name}, {order}", file=sys.stderr)
        json.dump([_event_json(e) for e in events], out, indent=2)
        out.write("\n")
        return 0
    print(f"Event store {name}, {order}:", file=out)
    if not events:
        print("No events.", file=out)
    for e in events:
        print(_event_line(e), file=out)
    return 0


def _callback_url(args: argparse.Namespace, out: TextIO) -> int:
    from airflow_edc_callbacks.tokens import make_token

    correlation_id = args.correlation_id or uuid.uuid4().hex
    base = (args.base_url or get_callback_base_url()).rstrip("/")
    print(f"{base}/callbacks/{make_token(get_signing_key(), correlation_id)}", file=out)
    return 0


def _terminate(args: argparse.Namespace, out: TextIO) -> int:
    """``POST /{version}/transferprocesses/{id}/terminate`` (or ``contractnegotiations``) on a connection's
    connector: what a task's ``on_kill`` does on Airflow 3.3, by hand (Airflow 3.1 / 3.2 never call it).
    A process that is final already counts as done (see ``lifecycle.terminate_process``)."""
    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.operators.lifecycle import ProcessKind, terminate_process

    hook = EdcManagementHook(args.conn_id)
    kind: ProcessKind = "negotiation" if args.negotiation else "transfer"
    label = "contract negotiation" if args.negotiation else "transfer process"
    termination = terminate_process(logging.getLogger(__name__), hook, kind, args.process_id, args.reason)
    if not termination.done:
        raise _Failure(
            f"could not terminate {label} {args.process_id} on {hook.settings.base_url}: {termination.detail}"
        )
    if termination.accepted:
        print(f"Asked {hook.settings.base_url} to terminate {label} {args.process_id}.", file=out)
    else:
        print(f"{label.capitalize()} {args.process_id} on {hook.settings.base_url}: {termination.detail}.", file=out)
    return 0


def _purge(args: argparse.Namespace, out: TextIO) -> int:
    older_than = parse_duration(args.older_than) if args.older_than else get_retention()
    store = _store(args.store_url)
    try:
        deleted = store.purge(older_than)
    except StoreUnavailableError as err:
        raise _Failure(f"cannot purge the event store {_store_name(store.url)}: {_reason(err, store.url)}") from err
    print(f"Deleted {deleted} event(s) received more than {older_than} ago.", file=out)
    return 0


def _static_config(args: argparse.Namespace, out: TextIO) -> int:
    from airflow_edc_callbacks.hooks.static_callback import EdcStaticCallbackHook
    from airflow_edc_callbacks.static_callbacks import connector_settings, render_settings

    hook = EdcStaticCallbackHook()
    if args.events:
        events = [e.strip() for item in args.events for e in item.split(",") if e.strip()]
        registration = hook.register(
            args.name, events, auth_header=args.auth_header, vault_alias=args.vault_alias, rotate=args.rotate
        )
    else:
        found = hook.get_registration(args.name)
        if found is None:
            raise ValueError(f"No static callback {args.name!r} is registered; pass --events to register it")
        registration = found
    base = (args.base_url or get_callback_base_url()).rstrip("/")
    settings = connector_settings(registration, base, args.connector_version)
    out.write(render_settings(settings, args.format))
    if args.store_in_connector:
        from airflow_edc_callbacks.hooks.edc import EdcManagementHook

        edc = EdcManagementHook(args.store_in_connector)
        if edc.put_secret(registration.vault_alias, registration.secret):
            print(f"# Stored the secret in the vault of {edc.settings.base_url}", file=sys.stderr)
        else:
            print(
                f"# {edc.settings.base_url} has no Secrets API (/v3/secrets): store the secret in its vault yourself",
                file=sys.stderr,
            )
    secret_note = (
        registration.secret
        if args.show_secret
        else f"see `airflow connections get {registration.conn_id}` (password), or pass --show-secret"
    )
    print(
        f"# Store the secret in the connector's vault under alias {registration.vault_alias!r}: {secret_note}",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="airflow-edc-callbacks",
        description="EDC callback receiver and event store of the airflow-edc-callbacks provider.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="Run the callback receiver standalone (uvicorn).")
    serve.add_argument("--host", default="0.0.0.0", help="Interface to bind (default 0.0.0.0).")
    serve.add_argument("--port", type=int, default=8099, help="Port (default 8099).")
    serve.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info).")
    defaults = ServerLimits()
    serve.add_argument(
        "--keep-alive-timeout",
        type=_non_negative(int),
        default=defaults.keep_alive_timeout,
        metavar="SECONDS",
        help=f"Close an idle keep-alive connection after this long (default {defaults.keep_alive_timeout}).",
    )
    serve.add_argument(
        "--header-timeout",
        type=_non_negative(float),
        default=defaults.header_timeout,
        metavar="SECONDS",
        help="Close a connection whose request line and headers are not complete this long after it was opened "
        f"or its previous response was sent (slow or idle clients; default {defaults.header_timeout:g}; 0: never).",
    )
    serve.add_argument(
        "--max-header-bytes",
        type=_positive(int),
        default=defaults.max_header_bytes,
        metavar="BYTES",
        help=f"Answer 400 to a request line plus headers larger than this (default {defaults.max_header_bytes}).",
    )
    serve.add_argument(
        "--body-timeout",
        type=_non_negative(float),
        metavar="SECONDS",
        help="Answer 408 to a callback whose body does not arrive within this long "
        "(default [edc_callbacks] body_timeout, 10; 0: no limit).",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=_non_negative(int),
        default=defaults.limit_concurrency,
        metavar="N",
        help="Answer 503 at once to requests arriving while N connections or requests are open "
        f"(default {defaults.limit_concurrency}; 0: no limit).",
    )
    serve.add_argument(
        "--backlog",
        type=_positive(int),
        default=defaults.backlog,
        metavar="N",
        help=f"Connections the kernel queues before they are accepted (default {defaults.backlog}).",
    )
    serve.set_defaults(func=_serve, output_only_on_stdout=False)

    events = sub.add_parser("events", help="List stored events, oldest first (--tail: newest first).")
    target = events.add_mutually_exclusive_group()
    target.add_argument("--process-id", help="Transfer process or contract negotiation id.")
    target.add_argument("--token", help="A callback token (or its correlation id).")
    events.add_argument(
        "--json", action="store_true", help="Print JSON with the full envelopes (EDR tokens replaced by ***)."
    )
    count = events.add_mutually_exclusive_group()
    count.add_argument("--limit", type=_positive(int), metavar="N", help="The N oldest events, oldest first.")
    count.add_argument("--tail", type=_positive(int), metavar="N", help="The N newest events, newest first.")
    events.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    events.set_defaults(func=_events)

    url = sub.add_parser("callback-url", help="Print a signed callback URL (for transfers started outside Airflow).")
    url.add_argument("--correlation-id", help="Correlation id to sign (default: a new random one).")
    url.add_argument("--base-url", help="Receiver base URL (default [edc_callbacks] callback_base_url).")
    url.set_defaults(func=_callback_url)

    static = sub.add_parser(
        "static-config",
        help="Register a static callback (or read its registration) and print the connector settings for it.",
    )
    static.add_argument("name", help="Callback name: lowercase letters and digits (edc.callback.<name>.*).")
    static.add_argument(
        "--events",
        nargs="+",
        help="Event prefixes, e.g. transfer.process contract.negotiation (registers or updates the callback).",
    )
    static.add_argument(
        "--connector-version", default="0.18.0", help="EDC version of the connector (auth key names; default 0.18.0)."
    )
    static.add_argument("--format", choices=["properties", "env"], default="properties", help="Output format.")
    static.add_argument("--rotate", action="store_true", help="Generate a new secret.")
    static.add_argument(
        "--auth-header", help="Header carrying the secret (default: as registered, X-Edc-Callback-Auth)."
    )
    static.add_argument("--vault-alias", help="Vault alias of the secret (default edc-static-callback-<name>).")
    static.add_argument("--base-url", help="Receiver base URL (default [edc_callbacks] callback_base_url).")
    static.add_argument("--show-secret", action="store_true", help="Print the secret (on standard error).")
    static.add_argument(
        "--store-in-connector",
        metavar="CONN_ID",
        help="Also store the secret in that connector's vault through its Secrets API, if it has one.",
    )
    static.set_defaults(func=_static_config)

    terminate = sub.add_parser(
        "terminate",
        help="Terminate a transfer process (or --negotiation) on the connector of an edc connection.",
    )
    terminate.add_argument("process_id", help="The consumer's transfer process (or contract negotiation) id.")
    terminate.add_argument("--negotiation", action="store_true", help="PROCESS_ID is a contract negotiation.")
    terminate.add_argument(
        "--conn-id", default=DEFAULT_CONN_ID, help=f"The edc connection (default {DEFAULT_CONN_ID})."
    )
    terminate.add_argument(
        "--reason", default="Terminated by airflow-edc-callbacks terminate", help="The reason the connector records."
    )
    terminate.set_defaults(func=_terminate)

    purge = sub.add_parser("purge", help="Delete events older than a duration.")
    purge.add_argument("--older-than", help="e.g. 7d, 12h, 30m (default [edc_callbacks] retention, 7d).")
    purge.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    purge.set_defaults(func=_purge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airflow-edc-callbacks`` console script; returns the exit status.

    The command's results go to standard output; while it runs, anything else written to ``sys.stdout``
    (Airflow configures its log handler on ``sys.stdout`` when first imported, and Alembic logs its
    migrations through it) goes to standard error. ``serve`` is a server: its access log is on standard
    output as uvicorn's always is.

    :returns: 0 on success, 1 when the command failed (a one-line message on standard error, e.g. the
        event store cannot be opened); usage errors exit with status 2 (``SystemExit``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stdout
    try:
        if not getattr(args, "output_only_on_stdout", True):
            return int(args.func(args, out))
        with _stdout_to_stderr():
            return int(args.func(args, out))
    except _Failure as failure:
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        return 1
    except ValueError as err:
        parser.error(str(err))
    return 2  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
