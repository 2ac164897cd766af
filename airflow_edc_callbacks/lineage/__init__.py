"""Lineage and assets of EDC transfers: OpenLineage facets (with the optional extra ``[openlineage]``) and
Airflow asset events that schedule the DAGs that need a transfer's data.

* :func:`edc_asset` / :func:`edc_asset_uri`: the Airflow asset of a provider's EDC asset, built from the
  counter-party's DSP address and the asset id (``edc://provider:19194/protocol/2025-1/demo-asset``), for an
  operator's ``outlets`` and a consumer DAG's ``schedule``;
* :func:`transfer_extra`: what a triggering asset event says of its transfer (``transfer_process_id``,
  ``asset_id``, ``contract_id``, ``source``; ``file``, ``size``, ``sha256`` after a PULL fetch), whether an
  operator or the provider-side asset watcher emitted it.

See docs/guides/lineage-and-assets.md.
"""

from __future__ import annotations

from airflow_edc_callbacks.lineage.assets import edc_asset, transfer_extra
from airflow_edc_callbacks.lineage.naming import edc_asset_uri

__all__ = ["edc_asset", "edc_asset_uri", "transfer_extra"]
