"""``EdcCallbackEventTrigger``: fire on stored callback events that match filters (``AssetWatcher``).

Used in an :class:`airflow.sdk.AssetWatcher` it schedules a DAG run per matching event, for example on
the provider side whenever one of its assets has been transferred (``TransferProcessCompleted`` events
of ``PROVIDER`` processes, delivered by the provider connector's static callback). Used once
(``one_shot``) it finds the first matching transfer for
:class:`~airflow_edc_callbacks.sensors.transfer.EdcTransferSensor`.

Only events that a static callback route delivered fire it (see :attr:`StoredEvent.via_static`): a
static callback is the connector's own stream of all its processes, authenticated by the registration's
secret, while a dynamic callback token only vouches for the waiting task it was made for (whose token
holder could write anything about its own process). An event stored by a dynamic callback first waits
up to :data:`STATIC_ROUTE_WAIT` seconds for the same event to arrive by the static route.

Each (process id, event type) fires at most once per trigger ``name``, also across a triggerer restart:
the trigger's cursor and what it fired are committed to the event store before the event is yielded.
So a triggerer that dies after that commit and before Airflow stored the asset event loses that one
event (at most once, by design). On PostgreSQL a later ``seq`` can commit first, so the trigger decides
each event it is handed (not "every seq up to the cursor"), and when it starts it reads the store's
backlog for it (:meth:`~airflow_edc_callbacks.store.EventStore.backlog`): the events after its cursor and
those below it that may have committed after the cursor passed them; what fired already is skipped by
its claim.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_edc_callbacks.exceptions import EdcCallbacksError
from airflow_edc_callbacks.models import TRANSFER_EVENT_PREFIX
from airflow_edc_callbacks.store import EventStore, StoredEvent, Subscription
from airflow_edc_callbacks.triggers.engine import open_store, store_unavailable, subscribe

STATIC_ROUTE_WAIT = 30.0
"""Seconds a matching event stored by a dynamic callback waits for its static-route delivery."""

_RECHECK_SECONDS = 0.5
"""While events wait for their static-route delivery: how often they are read again (by envelope id)."""

_DECIDED_MEMORY = 10_000
"""How many decided events (envelope ids) a running trigger remembers, to drop events handed to it twice."""


class EdcCallbackEventTrigger(BaseEventTrigger):
    """Yield a :class:`TriggerEvent` for each stored callback event that matches every given filter.

    :param event_types: envelope ``type`` prefixes, e.g. ``["TransferProcessCompleted"]`` or
        ``["ContractNegotiation"]``; empty matches every event.
    :param process_type: ``CONSUMER`` or ``PROVIDER`` (the payload's ``type``), or ``None`` for both.
    :param asset_id: only events whose payload ``assetId`` is this.
    :param contract_id: only events whose payload ``contractId`` is this.
    :param since: only events the receiver stored at or after this time (epoch milliseconds).
    :param name: the name of the cursor kept in the store; default derived from the filters, so two
        watchers with the same filters share one cursor.
    :param one_shot: stop after the first event (sensors); an ``AssetWatcher`` keeps it ``False``.

    Only events delivered by a static callback route fire it (see the module docstring): an event posted
    with a dynamic callback token, any task's, never does.

    The event payload: ``envelope_id``, ``event_type``, ``process_id``, ``process_type``, ``asset_id``,
    ``contract_id``, ``at`` (epoch milliseconds, connector clock), ``received_at`` (epoch milliseconds),
    ``routes``, and the keys of an operator's asset-event ``extra`` (see
    :mod:`airflow_edc_callbacks.lineage`): ``transfer_process_id`` (the process id of a ``TransferProcess*``
    event, else ``None``) and ``source`` (``callback``). No other payload field (an EDR could be one) leaves
    the store.
    """

    def __init__(
        self,
        *,
        event_types: Sequence[str] = (),
        process_type: str | None = None,
        asset_id: str | None = None,
        contract_id: str | None = None,
        since: int | None = None,
        name: str | None = None,
        one_shot: bool = False,
    ) -> None:
        super().__init__()
        if process_type is not None and process_type.upper() not in ("CONSUMER", "PROVIDER"):
            raise ValueError(f"process_type must be CONSUMER, PROVIDER or None, got {process_type!r}")
        self.event_types = [str(t) for t in event_types]
        self.process_type = process_type.upper() if process_type else None
        self.asset_id = asset_id
        self.contract_id = contract_id
        self.since = since
        self.one_shot = one_shot
        self.name = name or self._default_name()

    def _default_name(self) -> str:
        filters = json.dumps(
            [self.event_types, self.process_type, self.asset_id, self.contract_id, self.since, self.one_shot]
        )
        return "event-trigger-" + hashlib.sha256(filters.encode()).hexdigest()[:24]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_edc_callbacks.triggers.events.EdcCallbackEventTrigger",
            {
                "event_types": self.event_types,
                "process_type": self.process_type,
                "asset_id": self.asset_id,
                "contract_id": self.contract_id,
                "since": self.since,
                "name": self.name,
                "one_shot": self.one_shot,
            },
        )

    def matches(self, stored: StoredEvent) -> bool:
        """Whether ``stored`` passes every filter."""
        payload = stored.payload
        return (
            (not self.event_types or any(stored.event_type.startswith(t) for t in self.event_types))
            and (self.process_type is None or str(payload.get("type", "")).upper() == self.process_type)
            and (self.asset_id is None or payload.get("assetId") == self.asset_id)
            and (self.contract_id is None or payload.get("contractId") == self.contract_id)
            and (self.since is None or stored.received_at >= self.since)
        )

    @staticmethod
    def event_payload(stored: StoredEvent) -> dict[str, Any]:
        payload = stored.payload
        return {
            "envelope_id": stored.envelope_id,
            "event_type": stored.event_type,
            "process_id": stored.process_id,
            "process_type": payload.get("type"),
            "asset_id": payload.get("assetId"),
            "contract_id": payload.get("contractId"),
            "at": stored.event_at,
            "received_at": stored.received_at,
            "routes": list(stored.routes),
            # the keys of an operator's asset event extra (airflow_edc_callbacks.lineage), so one DAG reads both
            "transfer_process_id": stored.process_id if stored.event_type.startswith(TRANSFER_EVENT_PREFIX) else None,
            "source": "callback",
        }

    async def _start(self, store: EventStore) -> int:
        cursor = await asyncio.to_thread(store.cursor, self.name)
        if cursor is None:  # first run: only events from now on (or from `since`)
            cursor = 0 if self.since is not None else await asyncio.to_thread(store.max_seq)
            await asyncio.to_thread(store.set_cursor, self.name, cursor)
        return cursor

    async def _catch_up(self, store: EventStore) -> list[StoredEvent]:
        """The stored events to decide when the trigger (re)starts: those after its cursor, and those below
        it that may have committed late (see :meth:`~airflow_edc_callbacks.store.EventStore.backlog`)."""
        return await asyncio.to_thread(store.backlog, self.name, since=self.since)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield matching static-route events as they are stored, oldest first, each (process, type) once.

        Store outages are logged and retried every 5 s; then reading resumes from the saved cursor.
        """
        subscription: Subscription | None = None
        pending: list[StoredEvent] = []
        decided: OrderedDict[str, None] = OrderedDict()  # envelope ids decided in this run
        awaiting: dict[str, tuple[float, int]] = {}  # envelope id -> (monotonic deadline of its static copy, seq)
        saved = 0  # the highest cursor this run saved
        try:
            while True:
                try:
                    if subscription is None:
                        store = await open_store()
                        cursor = await self._start(store)  # the cursor first, then subscribe, then read
                        subscription = await subscribe(store, everything=True)
                        self.log.info("Watching callback events %s after seq %d", self._describe(), cursor)
                        pending = await self._catch_up(store)
                    for stored in pending:
                        if stored.envelope_id in decided or not self.matches(stored):
                            continue
                        if not stored.via_static:  # a dynamic callback's copy: wait for the connector's own
                            awaiting.setdefault(stored.envelope_id, (time.monotonic() + STATIC_ROUTE_WAIT, stored.seq))
                            continue
                        awaiting.pop(stored.envelope_id, None)
                        decided[stored.envelope_id] = None
                        if len(decided) > _DECIDED_MEMORY:
                            decided.popitem(last=False)
                        below = min((seq for _, seq in awaiting.values()), default=stored.seq + 1) - 1
                        if not await asyncio.to_thread(store.claim, self.name, stored, cursor=below):
                            self.log.info("Skipping %s for %s: fired already", stored.event_type, stored.process_id)
                            continue
                        self.log.info("Callback event %s for %s matches", stored.event_type, stored.process_id)
                        yield TriggerEvent(self.event_payload(stored))
                        if self.one_shot:
                            return
                    now = time.monotonic()
                    for envelope_id in [e for e, (deadline, _) in awaiting.items() if deadline < now]:
                        del awaiting[envelope_id]  # it never came by a static route: not for watchers
                    saved = await self._save_progress(store, pending, awaiting, saved)
                    pending = await subscription.wait(_RECHECK_SECONDS if awaiting else None)
                    if awaiting:  # ids only: their bodies are read once, when a static copy came
                        arrived = await asyncio.to_thread(store.statically_delivered, list(awaiting))
                        if arrived:
                            again = await asyncio.to_thread(store.events, envelope_ids=arrived)
                            pending = [*pending, *(row for row in again if row.via_static)]
                except EdcCallbacksError as err:
                    await store_unavailable(self.log, err, subscription)
                    subscription = None
        finally:
            if subscription is not None:
                subscription.close()

    async def _save_progress(
        self, store: EventStore, handed: list[StoredEvent], awaiting: dict[str, tuple[float, int]], saved: int
    ) -> int:
        """Save the cursor past the events this trigger was handed and decided (fired or not), but not past
        one still waiting for its static copy, so that a restart does not read them all again. Returns the
        cursor saved (``saved`` when nothing moved)."""
        if not handed:
            return saved
        seq = max(stored.seq for stored in handed)
        if awaiting:
            seq = min(seq, min(waiting_seq for _, waiting_seq in awaiting.values()) - 1)
        if seq <= saved:
            return saved
        await asyncio.to_thread(store.advance_cursor, self.name, seq)
        return seq

    def _describe(self) -> str:
        parts = [f"types={self.event_types or 'any'}"]
        for label, value in (("process", self.process_type), ("asset", self.asset_id), ("contract", self.contract_id)):
            if value:
                parts.append(f"{label}={value}")
        return " ".join(parts)
