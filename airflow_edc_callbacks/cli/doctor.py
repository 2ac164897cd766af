"""``airflow-edc-callbacks doctor``: check the set-up, one line per check with its status and its fix.

Checks, in order (see :mod:`.checks` and :mod:`.edc_check`): the event store (opens; its schema is this
version's; which file or URL, password hidden), the signing key (``callback_signing_key`` set, or a key
generated in ``AIRFLOW_HOME`` that other hosts do not share), ``callback_base_url`` (set, or falling back
to ``[api] base_url``), the callback self-test (a signed event posted to ``<callback_base_url>/callbacks/<token>``
arrives in the store, and is removed again), the ``edc`` connection (its Management API answers in its
``api_version``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from airflow_edc_callbacks.cli._common import positive
from airflow_edc_callbacks.cli.checks import (
    Check,
    check_callback_base_url,
    check_signing_key,
    check_store,
    self_test,
)
from airflow_edc_callbacks.cli.edc_check import check_connection
from airflow_edc_callbacks.config import get_store_url

_WIDTH = 22


def run_checks(args: argparse.Namespace) -> list[Check]:
    """Every check, in order; the self-test only when the store opens (and not with ``--no-self-test``)."""
    url = args.store_url or get_store_url()
    store_check, store = check_store(url)
    if store is not None:
        store.dispose()
    checks = [store_check, check_signing_key(), check_callback_base_url()]
    if args.no_self_test:
        checks.append(Check("callback self-test", "warn", "not run (--no-self-test)", "run doctor without it"))
    elif store_check.status == "fail":
        checks.append(Check("callback self-test", "fail", "not run: the store cannot be opened", store_check.fix))
    else:
        checks.append(self_test(url, float(args.timeout)))
    checks.append(check_connection(args.conn_id, float(args.timeout)))
    return checks


def _line(check: Check) -> str:
    text = f"{check.status:<5} {check.name:<{_WIDTH}} {check.message}"
    return f"{text} -- fix: {check.fix}" if check.fix else text


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    checks = run_checks(args)
    failed = any(c.status == "fail" for c in checks)
    if args.json:
        worst = "fail" if failed else ("warn" if any(c.status == "warn" for c in checks) else "ok")
        report: dict[str, Any] = {"status": worst, "checks": [c.as_json() for c in checks]}
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        for check in checks:
            print(_line(check), file=out)
    return 1 if failed else 0


def add_doctor_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``doctor`` (check the store, signing key, callback URL and connection) to ``sub``."""
    doctor = sub.add_parser(
        "doctor",
        help="Check the set-up: store, signing key, callback_base_url (a signed self-test event), edc connection.",
        description="One line per check: ok, warn or fail, what it found and the fix. Exit status 1 when a "
        "check fails. The self-test posts a signed event that no task waits for to <callback_base_url>/callbacks/"
        " and waits for it in the store, then deletes it.",
    )
    doctor.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    doctor.add_argument(
        "--conn-id", help="The edc connection to check (default edc_default; a warning when it is not defined)."
    )
    doctor.add_argument(
        "--timeout",
        type=positive(int),
        default=10,
        metavar="SECONDS",
        help="How long the self-test event may take to arrive, and each request (default 10).",
    )
    doctor.add_argument("--no-self-test", action="store_true", help="Do not post the self-test event.")
    doctor.add_argument("--json", action="store_true", help="Print the checks as JSON.")
    doctor.set_defaults(func=_doctor)
