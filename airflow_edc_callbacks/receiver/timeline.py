"""A task instance's callback event timeline: which stored events belong to it, and the read-only HTML page
the Airflow UI shows in the task instance's "EDC callbacks" tab (see :mod:`airflow_edc_callbacks.plugin`).

A task instance's events are those that arrived with its callback token (its correlation id,
:func:`~airflow_edc_callbacks.tokens.correlation_id_for`) and every event of the transfer processes and
contract negotiations bound to it (any route, so a connector's static callbacks count too). Each row says
whether the event is trusted (:meth:`~airflow_edc_callbacks.store.StoredEvent.trusted`): an event posted
with another task instance's token shows, marked untrusted.

Everything in an event is written by whoever sent it, so every value is HTML-escaped. The page shows the
event's type, ``at``, ``received_at``, process id, routes, trust and the connector's failure reason (with
:func:`~airflow_edc_callbacks.redaction.redact_text` applied); never the event's body, so never an EDR
(``dataAddress``), a token or a callback address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from airflow_edc_callbacks.redaction import redact_text
from airflow_edc_callbacks.store import EventStore, StoredEvent
from airflow_edc_callbacks.tokens import correlation_id_for

MAX_EVENTS = 500
"""At most this many events per query (the task's own token, each bound process): the newest are shown."""
MAX_REASON_CHARS = 500
"""A failure reason longer than this is cut (with ``…``)."""


@dataclass(frozen=True)
class TaskInstanceRef:
    """The task instance a timeline is about (``map_index`` -1 when the task is not mapped)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @property
    def correlation_id(self) -> str:
        """The correlation id of its callback token (the same on every try)."""
        return correlation_id_for(self.dag_id, self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True)
class TimelineRow:
    """One event as the page shows it.

    :ivar at: the envelope's ``at``, epoch milliseconds (connector clock).
    :ivar received_at: when the receiver stored it, epoch milliseconds.
    :ivar routes: the routes it arrived by (``dynamic``, ``static:<name>``).
    :ivar trusted: whether it may drive the task (see :meth:`StoredEvent.trusted`).
    :ivar reason: the connector's reason of a failure event, redacted; ``""`` when it has none.
    """

    seq: int
    event_type: str
    at: int
    received_at: int
    process_id: str | None
    routes: tuple[str, ...]
    trusted: bool
    envelope_id: str
    reason: str


def task_timeline(store: EventStore, ti: TaskInstanceRef) -> tuple[list[TimelineRow], bool]:
    """The task instance's events in the order they were stored (see the module's description).

    :returns: the rows, and whether some were left out (more than :data:`MAX_EVENTS` in one query).
    :raises StoreUnavailableError: the store cannot be read.
    """
    correlation_id = ti.correlation_id
    batches = [store.events(correlation_id=correlation_id, limit=MAX_EVENTS, newest_first=True)]
    batches += [store.events(process_id=p, limit=MAX_EVENTS, newest_first=True) for p in store.bound_to(correlation_id)]
    cut = any(len(batch) >= MAX_EVENTS for batch in batches)
    found: dict[int, StoredEvent] = {e.seq: e for batch in batches for e in batch}
    bindings: dict[str, str | None] = {}
    rows = []
    for event in sorted(found.values(), key=lambda e: e.seq):
        pid = event.process_id
        if pid is not None and pid not in bindings:
            bindings[pid] = store.binding(pid)
        trusted = event.trusted(bindings[pid]) if pid is not None else event.via_static
        rows.append(
            TimelineRow(
                seq=event.seq,
                event_type=event.event_type,
                at=event.event_at,
                received_at=event.received_at,
                process_id=pid,
                routes=event.routes,
                trusted=trusted,
                envelope_id=event.envelope_id,
                reason=_reason(event),
            )
        )
    return rows, cut


def _reason(event: StoredEvent) -> str:
    if not event.event_type.endswith("Terminated"):
        return ""
    value = event.payload.get("reason")
    if not isinstance(value, str):
        value = event.payload.get("errorDetail")
    if not isinstance(value, str):
        return ""
    value = redact_text(value)
    return value if len(value) <= MAX_REASON_CHARS else value[:MAX_REASON_CHARS] + "…"


def _time(epoch_ms: int) -> str:
    try:
        moment = dt.datetime.fromtimestamp(epoch_ms / 1000, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(epoch_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:18px;margin:0 0 4px}p.meta{margin:0 0 12px;color:#4a5568;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{border-bottom:1px solid #e2e8f0;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f7fafc;font-weight:600;white-space:nowrap}td.reason{overflow-wrap:anywhere}
code{font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-all}td.time,td.type{white-space:nowrap}
td.type{font-weight:600}.ok{color:#22543d}.bad{color:#9b2c2c;font-weight:600}
.ended-ok{background:#f0fff4}.ended-bad{background:#fff5f5}.empty{color:#4a5568}
@media (prefers-color-scheme:dark){body{background:#1a202c;color:#e2e8f0}th{background:#2d3748}
th,td{border-color:#4a5568}.ok{color:#9ae6b4}.bad{color:#feb2b2}.ended-ok{background:#1c4532}
.ended-bad{background:#63171b}p.meta,.empty{color:#a0aec0}}
"""

_HEAD = ("#", "Event", "At (connector, UTC)", "Received (UTC)", "Process", "Route", "Trusted", "Reason", "Envelope id")


def _row_html(row: TimelineRow) -> str:
    if row.event_type.endswith(("Completed", "Finalized", "Started")):
        css = ' class="ended-ok"'
    elif row.event_type.endswith("Terminated"):
        css = ' class="ended-bad"'
    else:
        css = ""
    trust = '<span class="ok">yes</span>' if row.trusted else '<span class="bad">no</span>'
    cells = (
        str(row.seq),
        f'<td class="type">{escape(row.event_type)}',
        f'<td class="time">{"<br>".join(map(escape, _time(row.at).split(" ", 1)))}',
        f'<td class="time">{"<br>".join(map(escape, _time(row.received_at).split(" ", 1)))}',
        f"<code>{escape(row.process_id or '-')}</code>",
        "<br>".join(map(escape, row.routes)),
        trust,
        f'<td class="reason">{escape(row.reason)}',
        f"<code>{escape(row.envelope_id)}</code>",
    )
    return f"<tr{css}>" + "".join(c if c.startswith("<td") else f"<td>{c}" for c in cells) + "</tr>"


def render_timeline(ti: TaskInstanceRef, rows: Sequence[TimelineRow], *, cut: bool = False) -> str:
    """The HTML page (a complete document, no script, inline style only) of ``rows``; every value escaped."""
    mapped = f" [{ti.map_index}]" if ti.map_index >= 0 else ""
    title = f"EDC callbacks of {ti.dag_id} / {ti.task_id}{mapped}"
    meta = (
        f"Run <code>{escape(ti.run_id)}</code> · correlation id <code>{escape(ti.correlation_id)}</code> · "
        f"{len(rows)} event{'' if len(rows) == 1 else 's'} in the callback store"
    )
    if cut:
        meta += f" (only the newest {MAX_EVENTS} per process are shown)"
    if rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in _HEAD)
        body = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(map(_row_html, rows))}</tbody></table>"
    else:
        body = (
            '<p class="empty">No callback events are stored for this task instance: it started no EDC process, '
            "its callbacks have not arrived, or retention removed them.</p>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1>{escape(title)}</h1><p class="meta">{meta}</p>{body}</body></html>'
    )
