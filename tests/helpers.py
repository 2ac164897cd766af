"""Test helpers: EDC event envelopes and condition waits with deadlines (no sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
"""The repository's root."""
FIXTURES = REPO / "tests" / "fixtures"
"""``tests/fixtures``: captured EDC bodies (``edc/``), EDR shapes (``edr/``), JSON-LD contexts (``jsonld/``)."""
EDC_FIXTURES = FIXTURES / "edc"
EDR_FIXTURES = FIXTURES / "edr"


def envelope(
    event_type: str = "TransferProcessCompleted",
    process_id: str = "tp-1",
    *,
    envelope_id: str | None = None,
    at: int | None = None,
    **payload: Any,
) -> dict[str, Any]:
    """An EDC EventEnvelope as a 0.18 consumer connector POSTs it (see tests/fixtures/edc)."""
    body: dict[str, Any] = {
        "transferProcessId": process_id,
        "callbackAddresses": [],
        "assetId": "demo-asset",
        "type": "CONSUMER",
        "contractId": "contract-1",
        "participantContextId": "consumer",
        "protocol": "dataspace-protocol-http:2025-1",
    }
    body.update(payload)
    return {
        "id": envelope_id or str(uuid.uuid4()),
        "at": at if at is not None else int(time.time() * 1000),
        "payload": body,
        "type": event_type,
    }


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy; raise ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def first_trigger_event(trigger: Any, timeout: float = 10) -> dict[str, Any]:
    """Run a trigger until its first event (with a deadline) and return the event's payload."""
    events = trigger.run()
    try:
        event = await asyncio.wait_for(events.__anext__(), timeout)
    finally:
        await events.aclose()
    return dict(event.payload)


async def until_subscribed(count: int = 1, timeout: float = 5) -> None:
    """Wait (deadline ``timeout`` seconds) until ``count`` triggers subscribe to the test store's listener.

    :raises TimeoutError: they did not within ``timeout``.
    """
    from airflow_edc_callbacks.store import get_listener, get_store

    listener = get_listener(get_store())
    deadline = asyncio.get_running_loop().time() + timeout
    while listener.subscription_count < count:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("trigger never subscribed to the store listener")
        await asyncio.sleep(0.01)


def record_event(store: Any, body: dict[str, Any], correlation_id: str | None = "c1", route: str = "dynamic") -> bool:
    """Store ``body`` (an event envelope) as the receiver does; ``True`` when it was new."""
    from airflow_edc_callbacks.models import EventEnvelope

    return bool(store.record(EventEnvelope.model_validate(body), body, correlation_id=correlation_id, route=route))
