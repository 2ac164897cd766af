"""Airflow assets of EDC transfers: the asset a transfer delivers, and the ``extra`` of its asset events.

An operator declared with ``outlets=[edc_asset(...)]`` (or any :class:`airflow.sdk.Asset`) gives, on success,
each of its asset outlets an asset event whose ``extra`` is :func:`transfer_event_extra`'s shape:
``transfer_process_id``, ``asset_id``, ``contract_id``, ``source`` (``callback`` or ``state_check``) and,
after a PULL fetch, ``file``, ``size`` (bytes) and ``sha256``. The provider side's asset watcher
(:class:`~airflow_edc_callbacks.triggers.EdcCallbackEventTrigger`) carries the same keys in its trigger
payload, which Airflow stores under ``extra["payload"]``; :func:`transfer_extra` reads either, so one
consumer DAG serves both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset

from airflow_edc_callbacks.lineage.naming import edc_asset_uri

EXTRA_KEYS = ("transfer_process_id", "asset_id", "contract_id", "source")
"""The keys every asset event of a transfer carries (``None`` when unknown)."""

FETCH_KEYS = ("file", "size", "sha256")
"""The keys a PULL fetch adds."""


def edc_asset(counter_party_address: str, asset_id: str, **kwargs: Any) -> Asset:
    """The Airflow asset of a provider's EDC asset, for ``outlets=[...]`` and ``schedule=[...]``.

    Its URI is :func:`~airflow_edc_callbacks.lineage.naming.edc_asset_uri`, e.g.
    ``edc://provider:19194/protocol/2025-1/demo-asset``; ``kwargs`` go to :class:`airflow.sdk.Asset`
    (``name``, ``group``, ``extra``, ``watchers``; the name defaults to the URI).

    :param counter_party_address: the provider's DSP address (user info, query and fragment are dropped).
    :param asset_id: the provider's asset id.
    :raises ValueError: the address is not an absolute URL, or ``asset_id`` is empty.
    """
    return Asset(uri=edc_asset_uri(counter_party_address, asset_id), **kwargs)


def transfer_event_extra(result: Mapping[str, Any], data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``extra`` of a transfer's asset event, from a task's XCom result (``transfer_process_id``,
    ``asset_id``, ``contract_id``, ``source``) and, for a PULL fetch, its ``data`` (``file``, ``size``,
    ``sha256``). JSON values only; never the EDR."""
    extra = {key: result.get(key) for key in EXTRA_KEYS}
    if data:
        extra.update({key: data.get(key) for key in FETCH_KEYS})
    return extra


def set_outlet_extra(outlets: Iterable[Any], context: Mapping[str, Any], extra: Mapping[str, Any]) -> int:
    """Put ``extra`` into the asset event of each :class:`~airflow.sdk.Asset` among ``outlets``
    (``context["outlet_events"][asset].extra``, Airflow 3); asset aliases and other outlets are left alone.

    :returns: how many asset events got it.
    """
    accessors = context.get("outlet_events")
    if accessors is None:
        return 0
    count = 0
    for outlet in outlets:
        if isinstance(outlet, Asset):
            accessors[outlet].extra.update(dict(extra))
            count += 1
    return count


def transfer_extra(event: Any) -> dict[str, Any]:
    """The transfer an asset event reports, whoever emitted it: an operator's ``extra``, or an asset
    watcher's (whose trigger payload Airflow keeps under ``extra["payload"]``).

    :param event: an asset event (``triggering_asset_events`` items: anything with ``extra``), or its
        ``extra`` mapping.
    :returns: a copy of the keys of :data:`EXTRA_KEYS` (and :data:`FETCH_KEYS`, and a watcher's own keys
        such as ``event_type``), ``None`` where absent.
    """
    extra = getattr(event, "extra", event) or {}
    if not isinstance(extra, Mapping):
        return dict.fromkeys(EXTRA_KEYS)
    payload = extra.get("payload")
    found = dict(payload) if extra.get("from_trigger") and isinstance(payload, Mapping) else dict(extra)
    for key in EXTRA_KEYS:
        found.setdefault(key, None)
    return found
