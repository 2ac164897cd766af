"""``airflow-edc-callbacks terminate``: end a transfer process or contract negotiation on a connector."""

from __future__ import annotations

import argparse
import logging
from typing import Any, TextIO

from airflow_edc_callbacks.cli._common import Failure
from airflow_edc_callbacks.config import DEFAULT_CONN_ID

_log = logging.getLogger("airflow_edc_callbacks.cli")


def _terminate(args: argparse.Namespace, out: TextIO) -> int:
    """``POST /{version}/transferprocesses/{id}/terminate`` (or ``contractnegotiations``) on a connection's
    connector: what a task's ``on_kill`` does on Airflow 3.3, by hand (Airflow 3.1 / 3.2 never call it).
    A process that is final already counts as done (see ``lifecycle.terminate_process``)."""
    from airflow_edc_callbacks.hooks.edc import EdcManagementHook
    from airflow_edc_callbacks.operators.lifecycle import terminate_process
    from airflow_edc_callbacks.triggers.kinds import KindName

    hook = EdcManagementHook(args.conn_id)
    kind: KindName = "negotiation" if args.negotiation else "transfer"
    label = "contract negotiation" if args.negotiation else "transfer process"
    termination = terminate_process(_log, hook, kind, args.process_id, args.reason)
    if not termination.done:
        raise Failure(
            f"could not terminate {label} {args.process_id} on {hook.settings.base_url}: {termination.detail}"
        )
    if termination.accepted:
        print(f"Asked {hook.settings.base_url} to terminate {label} {args.process_id}.", file=out)
    else:
        print(f"{label.capitalize()} {args.process_id} on {hook.settings.base_url}: {termination.detail}.", file=out)
    return 0


def add_terminate_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``terminate`` (a process on the connector of an ``edc`` connection) to ``sub``."""
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
