"""``airflow-edc-callbacks events`` and ``purge``: inspect and clean the event store."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from airflow_edc_callbacks.cli._common import (
    READ_RECURSION_LIMIT,
    Failure,
    open_store,
    positive,
    reason,
    recursion_headroom,
    shown,
    store_name,
)
from airflow_edc_callbacks.config import get_retention, parse_duration
from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.models import iso_from_epoch_ms
from airflow_edc_callbacks.redaction import redact_text, redact_tokens
from airflow_edc_callbacks.store import StoredEvent


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
        f"{iso_from_epoch_ms(e.received_at)}  {shown(e.event_type):<36} {shown(e.process_id or '-'):<38} "
        f"at={iso_from_epoch_ms(e.event_at)} id={shown(e.envelope_id)} via={shown(','.join(e.routes))}"
    )


def _events(args: argparse.Namespace, out: TextIO) -> int:
    store = open_store(args.store_url)
    name = store_name(store.url)
    correlation_id = args.token.partition(".")[0] if args.token else None
    newest_first = args.tail is not None
    order = "newest first" if newest_first else "oldest first"
    try:
        with recursion_headroom(READ_RECURSION_LIMIT):
            events = store.events(
                correlation_id=correlation_id,
                process_id=args.process_id,
                limit=args.tail if newest_first else args.limit,
                newest_first=newest_first,
            )
    except StoreUnavailableError as err:
        raise Failure(f"cannot read the event store {name}: {reason(err, store.url)}") from err
    except RecursionError as err:
        raise Failure(f"cannot read the event store {name}: an event body is nested too deeply to decode") from err
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


def _purge(args: argparse.Namespace, out: TextIO) -> int:
    older_than = parse_duration(args.older_than) if args.older_than else get_retention()
    store = open_store(args.store_url)
    try:
        deleted = store.purge(older_than)
    except StoreUnavailableError as err:
        raise Failure(f"cannot purge the event store {store_name(store.url)}: {reason(err, store.url)}") from err
    print(f"Deleted {deleted} event(s) received more than {older_than} ago.", file=out)
    return 0


def add_events_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``events`` (list stored events) to ``sub``."""
    events = sub.add_parser("events", help="List stored events, oldest first (--tail: newest first).")
    target = events.add_mutually_exclusive_group()
    target.add_argument("--process-id", help="Transfer process or contract negotiation id.")
    target.add_argument("--token", help="A callback token (or its correlation id).")
    events.add_argument(
        "--json", action="store_true", help="Print JSON with the full envelopes (EDR tokens replaced by ***)."
    )
    count = events.add_mutually_exclusive_group()
    count.add_argument("--limit", type=positive(int), metavar="N", help="The N oldest events, oldest first.")
    count.add_argument("--tail", type=positive(int), metavar="N", help="The N newest events, newest first.")
    events.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    events.set_defaults(func=_events)


def add_purge_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``purge`` (delete events older than a duration) to ``sub``."""
    purge = sub.add_parser("purge", help="Delete events older than a duration.")
    purge.add_argument("--older-than", help="e.g. 7d, 12h, 30m (default [edc_callbacks] retention, 7d).")
    purge.add_argument("--store-url", help="Event store URL (default [edc_callbacks] store_url).")
    purge.set_defaults(func=_purge)
