"""``airflow-edc-callbacks callback-url`` and ``static-config``: the addresses a connector calls back."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any, TextIO

from airflow_edc_callbacks.config import callback_base_url_fallback, get_callback_base_url
from airflow_edc_callbacks.tokens import get_signing_key


def _callback_url(args: argparse.Namespace, out: TextIO) -> int:
    from airflow_edc_callbacks.tokens import make_token

    correlation_id = args.correlation_id or uuid.uuid4().hex
    base = (args.base_url or get_callback_base_url()).rstrip("/")
    if not args.base_url and callback_base_url_fallback() is not None:
        print(
            f"# [edc_callbacks] callback_base_url is not set: using [api] base_url + /edc-callbacks ({base}); "
            "set it (or pass --base-url) to the receiver's URL as the connector reaches it",
            file=sys.stderr,
        )
    print(f"{base}/callbacks/{make_token(get_signing_key(), correlation_id)}", file=out)
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


def add_callback_url_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``callback-url`` (print a signed dynamic callback URL) to ``sub``."""
    url = sub.add_parser("callback-url", help="Print a signed callback URL (for transfers started outside Airflow).")
    url.add_argument("--correlation-id", help="Correlation id to sign (default: a new random one).")
    url.add_argument("--base-url", help="Receiver base URL (default [edc_callbacks] callback_base_url).")
    url.set_defaults(func=_callback_url)


def add_static_config_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``static-config`` (register a static callback, print the connector settings for it) to ``sub``."""
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
