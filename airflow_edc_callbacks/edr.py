"""Fetch a PULL transfer's data from the provider's public endpoint with its EDR.

The request is ``GET <endpoint>[/<path>][?<query>]`` with the EDR's token in the ``Authorization``
header, as EDC's data plane public APIs expect it (the token as is, no scheme). The body is streamed to
a file next to the destination, flushed to disk and renamed into place once complete, so a failed
download never leaves a partial file under the destination's name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from airflow_edc_callbacks.exceptions import EdcDataFetchError
from airflow_edc_callbacks.models import EndpointDataReference

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchResult:
    """What a data request returned.

    :ivar transfer_process_id: the transfer process whose EDR was used.
    :ivar url: the URL requested, without its query (which may carry a signature).
    :ivar file: the local file written.
    :ivar size: its size in bytes.
    :ivar sha256: hex SHA-256 of its content.
    :ivar content_type: the provider's ``Content-Type``, if any.
    :ivar edr_source: where the EDR used came from: ``connector`` (its EDR cache) or ``callback``.
    """

    transfer_process_id: str
    url: str
    file: str
    size: int
    sha256: str
    content_type: str | None
    edr_source: str = "connector"

    def as_dict(self) -> dict[str, Any]:
        """The result as an XCom-ready dict."""
        return {
            "transfer_process_id": self.transfer_process_id,
            "url": self.url,
            "file": self.file,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "edr_source": self.edr_source,
        }


def data_url(edr: EndpointDataReference, path: str = "", params: Mapping[str, str] | None = None) -> httpx.URL:
    """The EDR's endpoint with ``path`` appended to its path (one ``/`` between them) and ``params``
    merged into its query; a query the endpoint already has is kept.

    :raises ValueError: ``path`` holds a query or fragment (give query parameters as ``params``).
    """
    if "?" in path or "#" in path:
        raise ValueError(f"path must be a path only, got {path!r}: give query parameters as params")
    url = httpx.URL(edr.endpoint)
    if path:
        url = url.copy_with(path=f"{url.path.rstrip('/')}/{path.lstrip('/')}")
    if params:
        url = url.copy_merge_params(dict(params))
    return url


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fetch_to_file(
    edr: EndpointDataReference,
    destination: str | os.PathLike[str],
    *,
    path: str = "",
    params: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    transport: httpx.BaseTransport | None = None,
) -> FetchResult:
    """Download the data behind ``edr`` into ``destination`` (parent directories are created).

    :param edr: the transfer's EDR (see :meth:`~airflow_edc_callbacks.hooks.edc.EdcManagementHook.get_edr`).
    :param destination: the file to write; replaced when it exists.
    :param path: appended to the endpoint's path (providers whose asset sets ``proxyPath``).
    :param params: query parameters (providers whose asset sets ``proxyQueryParams``).
    :param timeout: seconds for connecting and between received chunks.
    :param transport: an httpx transport (tests, proxies); default httpx's.
    :raises EdcDataFetchError: the endpoint answered a non-2xx status (401/403: token refused or
        expired) or could not be reached. Nothing is left at ``destination`` then (its directory is
        created first).
    :raises ValueError: ``path`` holds a query.
    """
    url = data_url(edr, path, params)
    shown = str(url.copy_with(query=None))
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # as a plain open() would create it, not mkstemp's 0600
        with (
            os.fdopen(handle, "wb") as out,
            httpx.Client(timeout=timeout, transport=transport) as client,
            client.stream("GET", url, headers=edr.headers()) as response,
        ):
            if not response.is_success:
                excerpt = next(response.iter_bytes(300), b"")[:300].decode("utf-8", errors="replace").strip()
                raise EdcDataFetchError(edr.transfer_process_id, shown, response.status_code, excerpt or "no body")
            content_type = response.headers.get("content-type")
            for chunk in response.iter_bytes(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except httpx.HTTPError as err:
        os.unlink(partial)
        raise EdcDataFetchError(edr.transfer_process_id, shown, None, repr(err)) from err
    except BaseException:
        os.unlink(partial)
        raise
    return FetchResult(edr.transfer_process_id, shown, str(target), size, digest.hexdigest(), content_type, edr.source)
