"""``airflow-edc-callbacks serve``: the callback receiver standalone (uvicorn, with connection limits)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from airflow_edc_callbacks.cli._common import PROG, non_negative, positive, store_name
from airflow_edc_callbacks.receiver.server import ServerLimits


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
        f"{PROG} serve: store {store_name(settings.store_url or '')}; keep-alive {limits.keep_alive_timeout} s, "
        f"header timeout {limits.header_timeout:g} s, max header bytes {limits.max_header_bytes}, "
        f"body timeout {settings.body_timeout:g} s, limit concurrency {limits.limit_concurrency or 'none'}, "
        f"backlog {limits.backlog}",
        file=sys.stderr,
    )
    server.run()
    return 0 if server.started else 1


def add_serve_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``serve`` (the host, port and store, and :class:`ServerLimits` as options) to ``sub``."""
    serve = sub.add_parser("serve", help="Run the callback receiver standalone (uvicorn).")
    serve.add_argument("--host", default="0.0.0.0", help="Interface to bind (default 0.0.0.0).")
    serve.add_argument("--port", type=int, default=8099, help="Port (default 8099).")
    serve.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info).")
    defaults = ServerLimits()
    serve.add_argument(
        "--keep-alive-timeout",
        type=non_negative(int),
        default=defaults.keep_alive_timeout,
        metavar="SECONDS",
        help=f"Close an idle keep-alive connection after this long (default {defaults.keep_alive_timeout}).",
    )
    serve.add_argument(
        "--header-timeout",
        type=non_negative(float),
        default=defaults.header_timeout,
        metavar="SECONDS",
        help="Close a connection whose request line and headers are not complete this long after it was opened "
        f"or its previous response was sent (slow or idle clients; default {defaults.header_timeout:g}; 0: never).",
    )
    serve.add_argument(
        "--max-header-bytes",
        type=positive(int),
        default=defaults.max_header_bytes,
        metavar="BYTES",
        help=f"Answer 400 to a request line plus headers larger than this (default {defaults.max_header_bytes}).",
    )
    serve.add_argument(
        "--body-timeout",
        type=non_negative(float),
        metavar="SECONDS",
        help="Answer 408 to a callback whose body does not arrive within this long "
        "(default [edc_callbacks] body_timeout, 10; 0: no limit).",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=non_negative(int),
        default=defaults.limit_concurrency,
        metavar="N",
        help="Answer 503 at once to requests arriving while N connections or requests are open "
        f"(default {defaults.limit_concurrency}; 0: no limit).",
    )
    serve.add_argument(
        "--backlog",
        type=positive(int),
        default=defaults.backlog,
        metavar="N",
        help=f"Connections the kernel queues before they are accepted (default {defaults.backlog}).",
    )
    serve.set_defaults(func=_serve, output_only_on_stdout=False)
