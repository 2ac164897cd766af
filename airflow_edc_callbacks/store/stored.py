"""A stored callback event as the rest of the package sees it, and the digest that tells duplicates apart."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from airflow_edc_callbacks.store.tables import CallbackEventRow


@dataclass(frozen=True)
class StoredEvent:
    """An event as the store holds it.

    :ivar seq: position in the store (increasing in the order events were stored).
    :ivar event_at: the envelope's ``at``, epoch milliseconds (connector clock).
    :ivar received_at: when the receiver stored it, epoch milliseconds.
    :ivar routes: the routes it arrived by, e.g. ``("dynamic",)``.
    :ivar body: the envelope exactly as received (JSON object).
    """

    seq: int
    envelope_id: str
    event_type: str
    process_id: str | None
    correlation_id: str | None
    event_at: int
    received_at: int
    routes: tuple[str, ...]
    body: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        """The envelope's ``payload`` object."""
        payload = self.body.get("payload")
        return payload if isinstance(payload, dict) else {}

    @property
    def via_static(self) -> bool:
        """Whether a static callback route delivered it (its registration's secret was checked): it has a
        ``static:<name>`` route, or no correlation id (the receiver stores every event of a dynamic
        callback token with the token's correlation id, so a token-less event came by a static route)."""
        return self.correlation_id is None or any(route.startswith("static:") for route in self.routes)

    def trusted(self, bound_correlation: str | None) -> bool:
        """The trust rule: whether this event may drive a waiting task, a sensor, a watcher or an EDR.

        True when a static route delivered it, or when it came with the token of ``bound_correlation``,
        the correlation id its process is bound to (:meth:`EventStore.binding`; ``None`` while unbound).
        An event posted with the token of another task instance, or of a correlation id no process is
        bound to, is not trusted.
        """
        return self.via_static or self.correlation_id == bound_correlation

    @classmethod
    def from_row(cls, row: CallbackEventRow | Any) -> StoredEvent:
        """Build from an ORM row or a Core row of the same columns."""
        return cls(
            seq=row.seq,
            envelope_id=row.envelope_id,
            event_type=row.event_type,
            process_id=row.process_id,
            correlation_id=row.correlation_id,
            event_at=row.event_at,
            received_at=row.received_at,
            routes=tuple(row.routes.split()),
            body=row.body,
        )


def body_sha256(body: Any) -> str:
    """Hex SHA-256 of a JSON document's canonical form (sorted keys, no white space, UTF-8): two deliveries
    of one event have the same, whatever order the sender wrote the keys in.

    :raises ValueError: the document cannot be serialised (nested too deeply for the encoder).
    """
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise ValueError("JSON document nested too deeply to hash") from None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
