"""The ``airflow-edc-callbacks`` argument parser and entry point; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airflow_edc_callbacks.cli._common import PROG, Failure, stdout_to_stderr
from airflow_edc_callbacks.cli.callbacks import add_callback_url_parser, add_static_config_parser
from airflow_edc_callbacks.cli.connector import add_terminate_parser
from airflow_edc_callbacks.cli.doctor import add_doctor_parser
from airflow_edc_callbacks.cli.serve import add_serve_parser
from airflow_edc_callbacks.cli.store import add_events_parser, add_purge_parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every subcommand has ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="airflow-edc-callbacks",
        description="EDC callback receiver and event store of the airflow-edc-callbacks provider.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_parser(sub)
    add_events_parser(sub)
    add_callback_url_parser(sub)
    add_static_config_parser(sub)
    add_terminate_parser(sub)
    add_purge_parser(sub)
    add_doctor_parser(sub)
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
        with stdout_to_stderr():
            return int(args.func(args, out))
    except Failure as failure:
        print(f"{PROG}: error: {failure}", file=sys.stderr)
        return 1
    except ValueError as err:
        parser.error(str(err))
    return 2  # pragma: no cover
