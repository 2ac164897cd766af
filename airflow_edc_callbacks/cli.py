"""The ``airflow-edc-callbacks`` command: serve the receiver, inspect and purge stored events, make URLs."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from airflow_edc_callbacks.config import get_callback_base_url, get_retention, parse_duration
from airflow_edc_callbacks.models import iso_from_epoch_ms
from airflow_edc_callbacks.redaction import redact_tokens
from airflow_edc_callbacks.store import EventStore, get_store
from airflow_edc_callbacks.tokens import get_signing_key

__all__ = ["build_parser", "main"]


def _store(url: str | None) -> EventStore:
    return get_store(url)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from airflow_edc_callbacks import metrics
    from airflow_edc_callbacks.receiver import ReceiverSettings, create_app

    metrics.initialize_from_config()  # the api-server does this itself; this process is ours
    app = create_app(ReceiverSettings(store_url=args.store_url))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _events(args: argparse.Namespace) -> int:
    correlation_id = args.token.partition(".")[0] if args.token else None
    events = _store(args.store_url).events(correlation_id=correlation_id, process_id=args.process_id, limit=args.limit)
    if args.json:
        json.dump(
            [
                {
                    "seq": e.seq,
                    "id": e.envelope_id,
                    "type": e.event_type,
                    "process_id": e.process_id,
                    "correlation_id": e.correlation_id,
                    "at": e.event_at,
                    "received_at": e.received_at,
                    "routes": list(e.routes),
                    "body": redact_tokens(e.body),
                }
                for e in events
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return 0
    if not events:
        print("No events.")
        return 0
    for e in events:
        print(
            f"{iso_from_epoch_ms(e.received_at)}  {e.event_type:<36} {e.process_id or '-':<38} "
            f"at={iso_from_epoch_ms(e.event_at)} id={e.envelope_id} via={','.join(e.routes)}"
        )
    return 0


def _callback_url(args: argparse.Namespace) -> int:
    from airflow_edc_callbacks.tokens import make_token

    correlation_id = args.correlation_id or uuid.uuid4().hex
    base = (args.base_url or get_callback_base_url()).rstrip("/")
    print(f"{base}/callbacks/{make_token(get_signing_key(), correlation_id)}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    older_than = parse_duration(args.older_than) if args.older_than else get_retention()
    deleted = _store(args.store_url).purge(older_than)
    print(f"Deleted {deleted} event(s) received more than {older_than} ago.")
    return 0


def _static_config(args: argparse.Namespace) -> int:
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
    sys.stdout.write(render_settings(settings, args.format))
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
    serve.set_defaults(func=_serve)

    events = sub.add_parser("events", help="List stored events, oldest first.")
    target = events.add_mutually_exclusive_group()
    target.add_argument("--process-id", help="Transfer process or contract negotiation id.")
    target.add_argument("--token", help="A callback token (or its correlation id).")
    events.add_argument(
        "--json", action="store_true", help="Print JSON with the full envelopes (EDR tokens replaced by ***)."
    )
    events.add_argument("--limit", type=int, help="At most this many events.")
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

    purge = sub.add_parser("purge", help="Delete events older than a duration.")
    purge.add_argument("--older-than", help="e.g. 7d, 12h, 30m (default [edc_callbacks] retention, 7d).")
    purge.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    purge.set_defaults(func=_purge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airflow-edc-callbacks`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as err:
        parser.error(str(err))
    return 2  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
