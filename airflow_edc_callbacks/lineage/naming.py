"""Names of the data a transfer moves, as OpenLineage datasets (``namespace`` / ``name``) and Airflow asset URIs.

* the provider's asset: namespace ``edc://<host>[:<port>]<path>`` of the counter-party's DSP address (its
  scheme, user info, query and fragment dropped), name the asset id; the asset URI is the namespace with
  the percent-encoded asset id as its last path segment (:func:`edc_asset_uri`);
* a PUSH transfer's data destination (an EDC ``DataAddress``): ``HttpData`` as ``<scheme>://<host>[:<port>]``
  and the path of ``baseUrl`` (no user info, no query: either may carry a secret), ``AmazonS3`` as
  ``s3://<bucketName>`` and ``objectName``, ``AzureStorage`` as ``wasbs://<container>@<account>.blob.core.windows.net``
  and ``blobName``; any other type as ``edc-data-address:<type>`` with no further detail;
* a file a PULL fetch wrote: namespace ``file``, name its absolute path (OpenLineage's naming for a local
  file system).

No function here reads a secret into a name: only the keys named above are read, and every name passes
:func:`~airflow_edc_callbacks.redaction.redact_text` as a last guard.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from airflow_edc_callbacks.redaction import redact_text

EDC_SCHEME = "edc"
"""The URI scheme of an EDC asset (Airflow asset URIs and OpenLineage namespaces)."""


class DatasetName(NamedTuple):
    """An OpenLineage dataset's identity: ``namespace`` and ``name`` within it."""

    namespace: str
    name: str


def _origin(scheme: str, address: str) -> tuple[str, str]:
    """``(<scheme>://<host>[:<port>], path)`` of ``address`` without user info, query and fragment.

    :raises ValueError: ``address`` has no host.
    """
    parts = urlsplit(address.strip())
    if not parts.hostname:
        raise ValueError(f"not an absolute URL: {redact_text(address)[:200]!r}")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{scheme}://{host}{port}", parts.path.rstrip("/")


def dsp_namespace(counter_party_address: str) -> str:
    """The OpenLineage namespace of a counter-party's assets: ``edc://<host>[:<port>]<path>`` of its DSP
    address, e.g. ``http://provider:19194/protocol/2025-1`` -> ``edc://provider:19194/protocol/2025-1``.

    :raises ValueError: the address is not an absolute URL.
    """
    origin, path = _origin(EDC_SCHEME, counter_party_address)
    return redact_text(origin + path)


def asset_dataset(counter_party_address: str, asset_id: str) -> DatasetName:
    """The provider's asset as an OpenLineage dataset (namespace :func:`dsp_namespace`, name the asset id).

    :raises ValueError: the address is not an absolute URL, or ``asset_id`` is empty.
    """
    if not asset_id:
        raise ValueError("asset_id must not be empty")
    return DatasetName(dsp_namespace(counter_party_address), asset_id)


def edc_asset_uri(counter_party_address: str, asset_id: str) -> str:
    """The Airflow asset URI of a provider's EDC asset: its dataset namespace (:func:`dsp_namespace`) with
    the percent-encoded asset id appended, e.g. ``edc://provider:19194/protocol/2025-1/demo-asset``.

    :param counter_party_address: the provider's DSP address, as a transfer's ``counter_party_address``.
    :param asset_id: the provider's asset id (any characters; ``/`` becomes ``%2F``).
    :raises ValueError: the address is not an absolute URL, or ``asset_id`` is empty.
    """
    dataset = asset_dataset(counter_party_address, asset_id)
    return f"{dataset.namespace}/{quote(asset_id, safe='')}"


def _term(key: str) -> str:
    return re.split(r"[/#:]", key)[-1]


def _field(address: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` in a ``DataAddress`` (plain, ``edc:``-prefixed or expanded keys), as text."""
    wanted = {n.lower() for n in names}
    for key, value in address.items():
        if isinstance(key, str) and _term(key).lower() in wanted:
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, Mapping):
                value = value.get("@value")
            if value is not None and str(value).strip():
                return str(value).strip()
    return None


def destination_dataset(data_destination: Mapping[str, Any] | None) -> DatasetName | None:
    """The data destination of a PUSH transfer as a dataset (see the module documentation); ``None`` for
    none, or an ``HttpData`` address whose ``baseUrl`` is not an absolute URL."""
    if not data_destination:
        return None
    kind = _field(data_destination, "type") or "unknown"
    if kind.lower() == "httpdata":
        base_url = _field(data_destination, "baseUrl", "endpoint")
        if not base_url:
            return None
        try:
            scheme = urlsplit(base_url.strip()).scheme.lower() or "http"
            origin, path = _origin(scheme, base_url)
        except ValueError:
            return None
        return DatasetName(redact_text(origin), redact_text(path or "/"))
    if kind.lower() == "amazons3":
        bucket = _field(data_destination, "bucketName")
        if bucket:
            return DatasetName(f"s3://{bucket}", redact_text(_field(data_destination, "objectName", "keyName") or "/"))
    if kind.lower() == "azurestorage":
        account, container = _field(data_destination, "account"), _field(data_destination, "container")
        if account and container:
            blob = _field(data_destination, "blobName") or "/"
            return DatasetName(f"wasbs://{container}@{account}.blob.core.windows.net", redact_text(blob))
    return DatasetName(f"edc-data-address:{redact_text(kind)}", "/")


def file_dataset(path: str | os.PathLike[str]) -> DatasetName:
    """A local file as a dataset: namespace ``file``, name its absolute path."""
    return DatasetName("file", os.path.abspath(os.fspath(path)))
