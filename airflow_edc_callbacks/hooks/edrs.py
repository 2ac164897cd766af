"""EDRs of PULL transfers and their data (EDC ``EdrCacheApiV3``, Tractus-X ``EdrCacheApiController``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

from airflow_edc_callbacks.edr import FetchResult, fetch_to_file
from airflow_edc_callbacks.exceptions import EdcApiError, EdcDataFetchError, EdcEdrNotFound, EdcEdrRefused
from airflow_edc_callbacks.hooks.transfers import TransferProcessMethods
from airflow_edc_callbacks.models import EndpointDataReference

_REFUSED = frozenset({401, 403})
"""Data plane answers that mean the token was not accepted (expired, rotated or revoked)."""


def _masked(edr: EndpointDataReference) -> EndpointDataReference:
    """Register the EDR's tokens (access and refresh) with Airflow's secrets masker, so no log line can
    show them."""
    secrets = edr.secrets()
    if secrets:
        from airflow.sdk.log import mask_secret

        for secret in secrets:
            mask_secret(secret)
    return edr


class EdrMethods(TransferProcessMethods):
    """Read and refresh the EDRs of PULL transfers, and download their data with them."""

    def get_edr(
        self, transfer_process_id: str, *, use_callbacks: bool = True, auto_refresh: bool = True
    ) -> EndpointDataReference:
        """The EDR of a started PULL transfer, for fetching its data; keep it out of XCom and logs.

        Asks the connector's EDR cache: ``GET /{version}/edrs/{id}/dataaddress`` on a v4 connection, then
        ``GET /v3/edrs/{id}/dataaddress`` (EDC ``EdrCacheApiV3Controller``). On a Tractus-X connection
        (extra ``tractusx``) the query ``auto_refresh=true`` (or ``false``) is sent: Tractus-X EDC then
        refreshes an expired token itself before answering (its ``EdrCacheApiController``); with a ledger
        that read runs under the transfer's EDR refresh lock, so parallel tasks never refresh one EDR at
        once (eclipse-tractusx/tractusx-edc#1618). Plain EDC has no refresh: ``auto_refresh`` changes
        nothing there. When the connector has no such entry or no EDR cache API (404), ``use_callbacks``
        is set and the hook has a ledger, takes the EDR of the transfer's stored ``TransferProcessStarted``
        callback (``source = "callback"``; see :meth:`~.ledger.CallbackLedger.stored_edr` for when it may
        be used). The tokens (access and refresh) are registered with Airflow's secrets masker.

        :param auto_refresh: Tractus-X: let the connector refresh an expired token.
        :raises EdcEdrNotFound: no usable EDR (not a PULL transfer, not started yet, or already ended;
            the message says what the connector answered).
        :raises EdcTransportError: the connector could not be reached.
        :raises StoreUnavailableError: Tractus-X ``auto_refresh``: the transfer's refresh lock stayed taken
            beyond twice its lease.
        """
        if auto_refresh and self.settings.tractusx:
            with self._edr_refresh_lock(transfer_process_id):
                return self._read_edr(transfer_process_id, use_callbacks=use_callbacks, auto_refresh=True)
        return self._read_edr(transfer_process_id, use_callbacks=use_callbacks, auto_refresh=False)

    def _read_edr(self, transfer_process_id: str, *, use_callbacks: bool, auto_refresh: bool) -> EndpointDataReference:
        query = f"?auto_refresh={str(auto_refresh).lower()}" if self.settings.tractusx else ""
        paths = [f"/v3/edrs/{transfer_process_id}/dataaddress{query}"]
        if self.is_v4:
            paths.insert(0, self.api_path(f"edrs/{transfer_process_id}/dataaddress{query}"))
        answers = []
        for path in paths:
            try:
                address = self._send("GET", path)
            except EdcApiError as err:
                if err.status_code != 404:
                    raise
                answers.append(f"{path} answered 404 ({'; '.join(err.messages) or 'no detail'})")
                continue
            if isinstance(address, Mapping):
                return _masked(EndpointDataReference.from_data_address(transfer_process_id, address))
            answers.append(f"{path} returned {type(address).__name__}")
        detail = "the connector's EDR cache: " + ", ".join(answers)
        if use_callbacks:
            if self.ledger is None:
                detail += "; the callback store: not given to this hook (EdcManagementHook(ledger=...))"
            else:
                stored, why_not = self.ledger.stored_edr(
                    transfer_process_id, lambda: self.get_transfer_state(transfer_process_id)
                )
                if stored is not None:
                    return _masked(stored)
                detail += f"; the callback store: {why_not}"
        raise EdcEdrNotFound(transfer_process_id, self.settings.base_url, detail)

    def refresh_edr(
        self, transfer_process_id: str, stale: EndpointDataReference | None = None
    ) -> EndpointDataReference:
        """Refresh a transfer's EDR once, one caller at a time per transfer (Tractus-X EDC only).

        Takes the transfer's EDR refresh lock through the ledger (waiting while another task, worker or
        host holds it). With ``stale`` (the EDR the provider refused) it first reads the EDR again
        without refreshing: when its token differs, someone refreshed while this caller waited, and that
        EDR is returned. Otherwise ``POST /v3/edrs/{id}/refresh`` (Tractus-X ``EdrCacheApiController``:
        the connector sends the provider's refresh endpoint a ``grant_type=refresh_token`` request
        authenticated with a token it signs with the participant's key, as the Tractus-X refresh token
        grant profile requires; no client without that key can refresh at the provider directly).

        :param stale: the EDR whose token the provider refused, if any.
        :raises ValueError: the connection is not a Tractus-X one (EDC has no EDR refresh).
        :raises EdcApiError: the connector refused the refresh (e.g. the provider answered 4xx: the
            transfer or its agreement is no longer valid).
        :raises StoreUnavailableError: the lock stayed taken beyond twice its lease.
        """
        if not self.settings.tractusx:
            raise ValueError(
                f"Connection {self.edc_conn_id!r} is not a Tractus-X EDC connection (extra tractusx): "
                "EDC has no API to refresh an EDR"
            )
        with self._edr_refresh_lock(transfer_process_id):
            if stale is not None:
                current = self._read_edr(transfer_process_id, use_callbacks=False, auto_refresh=False)
                if current.authorization != stale.authorization:
                    self.log.info("EDR of transfer process %s was refreshed by another task", transfer_process_id)
                    return current
            address = self._send("POST", f"/v3/edrs/{transfer_process_id}/refresh")
            if not isinstance(address, Mapping):
                raise EdcApiError(
                    200,
                    "POST",
                    f"{self.settings.base_url}/v3/edrs/{transfer_process_id}/refresh",
                    ["no data address in the answer"],
                )
            self.log.info("Refreshed the EDR of transfer process %s", transfer_process_id)
            return _masked(EndpointDataReference.from_data_address(transfer_process_id, address))

    def _edr_refresh_lock(self, transfer_process_id: str) -> AbstractContextManager[None]:
        """The ledger's EDR refresh lock of the transfer, leased longer than a read with every retry
        plus a refresh; without a ledger, none (a refused token is still read again and refreshed once)."""
        if self.ledger is None:
            return nullcontext()
        return self.ledger.edr_refresh_lock(transfer_process_id, self.timeout * (self.retries + 2) + 30.0)

    def fetch_data(
        self,
        transfer_process_id: str,
        destination: str | os.PathLike[str],
        *,
        path: str = "",
        params: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        auto_refresh: bool = True,
    ) -> FetchResult:
        """Download a started PULL transfer's data from the provider's public endpoint into ``destination``.

        Gets the EDR with :meth:`get_edr` and sends ``GET <endpoint>[/<path>]`` with its token; the tokens
        stay inside this call. When the provider refuses the token (401/403): reads the EDR again once
        (another task may have refreshed it) and retries with a changed token; if still refused and the
        connection is Tractus-X with ``auto_refresh``, refreshes once (:meth:`refresh_edr`: under the
        transfer's lock, and not at all when another task refreshed meanwhile) and retries once. Never
        more: then :class:`EdcEdrRefused`.

        :raises EdcEdrNotFound: no EDR is known for the transfer.
        :raises EdcEdrRefused: the provider kept refusing the EDR (names the transfer, the URL and what to do).
        :raises EdcDataFetchError: the provider's endpoint failed otherwise or could not be reached.
        :raises StoreUnavailableError: the transfer's EDR refresh lock stayed taken beyond twice its lease.
        """

        def fetch(edr: EndpointDataReference) -> FetchResult:
            return fetch_to_file(edr, destination, path=path, params=params, timeout=timeout)

        edr = self.get_edr(transfer_process_id, auto_refresh=auto_refresh)
        try:
            return fetch(edr)
        except EdcDataFetchError as err:
            if err.status_code not in _REFUSED:
                raise
            refused = err
        self.log.info(
            "The provider refused the EDR of transfer process %s (%s): reading it again",
            transfer_process_id,
            refused.status_code,
        )
        tried = "read the EDR again"
        again = self.get_edr(transfer_process_id, auto_refresh=auto_refresh)
        if again.authorization != edr.authorization:
            try:
                return fetch(again)
            except EdcDataFetchError as err:
                if err.status_code not in _REFUSED:
                    raise
                refused = err
            edr = again
        if auto_refresh and self.settings.tractusx:
            advice = (
                "Start a new transfer; if that is refused too, check the contract agreement's policy "
                "(it may have expired or no longer be satisfied)."
            )
            try:
                fresh = self.refresh_edr(transfer_process_id, stale=edr)
            except EdcApiError as err:  # the provider refused the refresh too (via the connector)
                tried = f"read the EDR again and asked the connector to refresh it, which failed ({err})"
            else:
                tried = "read the EDR again and refreshed it once"
                try:
                    return fetch(fresh)
                except EdcDataFetchError as err:
                    if err.status_code not in _REFUSED:
                        raise
                    refused = err
        else:
            advice = (
                "Start a new transfer (the provider may have terminated this one, or its policy no longer "
                "allows access)"
                + (
                    "; a Tractus-X EDC connector can refresh EDRs: set the connection's extra tractusx to true."
                    if not self.settings.tractusx
                    else "."
                )
            )
        raise EdcEdrRefused(
            transfer_process_id, refused.url, int(refused.status_code or 0), refused.detail, tried, advice
        )
