"""``StoreLedger``: the callback store's side of ``EdcManagementHook``, where hook and store meet.

The hook (:mod:`airflow_edc_callbacks.hooks`) never imports the store; the operators and the CLI build
``EdcManagementHook(conn_id, ledger=StoreLedger())``. Custom code that starts processes or reads EDRs
through the hook passes one the same way to get the same binding, locking and EDR fallback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from airflow_edc_callbacks.exceptions import StoreUnavailableError
from airflow_edc_callbacks.models import EndpointDataReference, TransferEventType
from airflow_edc_callbacks.store import EventStore, get_store

log = logging.getLogger(__name__)

T = TypeVar("T")

_FACT_FIELDS = (("asset_id", "assetId"), ("contract_id", "contractId"), ("transfer_type", "transferType"))
"""Facts of a transfer read from its stored callbacks' payloads: (fact, payload key)."""

_LOCK_POLL_MAX = 0.5
"""Longest pause, in seconds, between two tries to take a busy EDR refresh lock."""


def _in_store(call: Callable[[EventStore], T]) -> T:
    """``call`` on the store as a task's worker opens it: without Alembic, unless the tables are missing or
    older than this package (then upgraded once; the api-server and triggerer normally keep them current).

    :raises StoreUnavailableError: the store cannot be used.
    """
    try:
        return call(get_store(waiting=True, migrate=False))
    except StoreUnavailableError:
        return call(get_store(waiting=True))


class StoreLedger:
    """:class:`~airflow_edc_callbacks.hooks.ledger.CallbackLedger` on the package's callback store
    (``[edc_callbacks] store_url``), opened on first use."""

    def bind(self, process_id: str, correlation_id: str) -> str:
        """Bind ``process_id`` to ``correlation_id`` (``EventStore.bind``); the id it is bound to.

        :raises StoreUnavailableError: the store cannot be written.
        """
        return _in_store(lambda store: store.bind(process_id, correlation_id))

    def mark_taken(self, process_id: str, correlation_id: str) -> bool:
        """Record that this try took ``process_id``'s result (``EventStore.mark_taken``).

        :raises StoreUnavailableError: the store cannot be written.
        """
        return _in_store(lambda store: store.mark_taken(process_id, correlation_id))

    def bound(self, process_id: str, correlation_id: str) -> bool:
        """Whether ``process_id`` is bound to ``correlation_id`` (``EventStore.binding``), taken or not.

        :raises StoreUnavailableError: the store cannot be read.
        """
        return _in_store(lambda store: store.binding(process_id)) == correlation_id

    def untaken(self, process_id: str, correlation_id: str) -> bool:
        """Whether no try took ``process_id``'s result (``EventStore.untaken``; an unknown process counts
        as taken).

        :raises StoreUnavailableError: the store cannot be read.
        """
        return _in_store(lambda store: store.untaken(process_id, correlation_id))

    @contextmanager
    def edr_refresh_lock(self, transfer_process_id: str, lease: float) -> Iterator[None]:
        """Hold the transfer's EDR refresh lock (``EventStore.try_lock_edr_refresh``), polling with
        backoff (at most :data:`_LOCK_POLL_MAX` s) while another holder has it; without a store, go on
        unlocked (logged: a refused token is still read again and refreshed once).

        :param lease: seconds the lock holds when its holder dies.
        :raises StoreUnavailableError: the lock stayed taken beyond twice its lease.
        """
        holder = uuid.uuid4().hex
        try:
            store, taken = _in_store(lambda s: (s, s.try_lock_edr_refresh(transfer_process_id, holder, lease)))
        except StoreUnavailableError as err:
            log.warning("EDR of transfer process %s used without its lock: %s", transfer_process_id, err)
            yield
            return
        deadline = time.monotonic() + 2 * lease
        pause = 0.02
        while not taken:
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"The EDR refresh lock of transfer process {transfer_process_id} stayed taken for "
                    f"{2 * lease:.0f} s (its lease is {lease:.0f} s)"
                )
            time.sleep(pause)
            pause = min(pause * 2, _LOCK_POLL_MAX)
            taken = store.try_lock_edr_refresh(transfer_process_id, holder, lease)
        try:
            yield
        finally:
            try:
                store.unlock_edr_refresh(transfer_process_id, holder)
            except StoreUnavailableError as err:  # the lease ends it
                log.warning("EDR refresh lock of %s not released: %s", transfer_process_id, err)

    def stored_edr(
        self, transfer_process_id: str, transfer_state: Callable[[], str]
    ) -> tuple[EndpointDataReference | None, str]:
        """The ``dataAddress`` of the transfer's ``TransferProcessStarted`` callback (``source = "callback"``),
        only while the transfer is still ``STARTED`` (one ``transfer_state()`` call) and no later event
        of it is stored: an ended transfer's token is revoked. Only trusted events are read (static-route
        ones, and those with the token of the task instance the transfer is bound to; see
        ``StoredEvent.trusted``), and all trusted ``Started`` events must name one endpoint (a task's own
        token could announce another); of them the connector's static delivery is preferred, then the
        newest (a resumed transfer's fresh token).

        :returns: ``(edr, "")``, or ``(None, why not)``.
        """
        try:
            store = get_store(waiting=True)
            bound = store.binding(transfer_process_id)
            events = [e for e in store.events(process_id=transfer_process_id) if e.trusted(bound)]
        except StoreUnavailableError as err:
            return None, f"unavailable ({err})"
        started = [i for i, e in enumerate(events) if e.event_type == TransferEventType.STARTED.value]
        if not started:
            return None, "no TransferProcessStarted callback is stored that may be trusted"
        later = [e.event_type for e in events[started[-1] + 1 :]]
        if later:
            return None, f"the transfer moved on after it started ({', '.join(later)})"
        state = transfer_state()
        if state != "STARTED":
            return None, f"the transfer is {state}"
        candidates = sorted((events[i] for i in started), key=lambda e: (e.via_static, e.seq))
        edrs: list[EndpointDataReference] = []
        for stored in candidates:
            address = stored.payload.get("dataAddress")
            if not isinstance(address, Mapping):
                return None, f"its TransferProcessStarted callback {stored.envelope_id} has no data address"
            try:
                edrs.append(EndpointDataReference.from_data_address(transfer_process_id, address, source="callback"))
            except ValueError as err:
                return None, str(err)
        endpoints = sorted({edr.endpoint for edr in edrs})
        if len(endpoints) > 1:
            return None, f"its TransferProcessStarted callbacks name different endpoints ({', '.join(endpoints)})"
        return edrs[-1], ""

    def transfer_facts(self, transfer_process_id: str) -> dict[str, str]:
        """What the trusted callbacks stored for a transfer say of it (for lineage and asset events):
        ``asset_id``, ``contract_id`` and ``transfer_type`` (payload ``assetId``, ``contractId``,
        ``transferType``), those present; the newest event wins. Only trusted events are read (see
        ``StoredEvent.trusted``); never the payload's ``dataAddress``.

        :returns: the facts found; empty when none is stored or the store cannot be read.
        """
        try:
            store = get_store(waiting=True, migrate=False)
            bound = store.binding(transfer_process_id)
            events = [e for e in store.events(process_id=transfer_process_id) if e.trusted(bound)]
        except StoreUnavailableError as err:
            log.info("No stored callbacks of transfer process %s for lineage: %s", transfer_process_id, err)
            return {}
        facts: dict[str, str] = {}
        for stored in events:
            for key, field in (
                ("asset_id", "assetId"),
                ("contract_id", "contractId"),
                ("transfer_type", "transferType"),
            ):
                value = stored.payload.get(field)
                if isinstance(value, str) and value:
                    facts[key] = value
        return facts
