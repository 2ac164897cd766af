"""``EdcManagementHook``: the EDC connector's Management API (v3 or v4) over httpx, sync and async.

Composed of :mod:`~.base` (connection, transport, retry), the thin API methods of :mod:`~.transfers`,
:mod:`~.negotiations`, :mod:`~.vault` and :mod:`~.edrs`, and the pure request bodies of :mod:`~.jsonld`.

EDC facts: endpoints and bodies from the EDC connector's ``TransferProcessApiV3``/``V4``,
``ContractNegotiationApiV3``/``V4``, ``CatalogApiV3``/``V4`` and ``EdrCacheApiV3`` (v0.15.1 to v0.18.0).
Management API v4 has the paths of v3 under ``/v4beta`` (EDC 0.14 to 0.16) or ``/v4`` (0.17 and later).
"""

from __future__ import annotations

from airflow_edc_callbacks.config import DEFAULT_CONN_ID
from airflow_edc_callbacks.hooks.edrs import EdrMethods
from airflow_edc_callbacks.hooks.negotiations import NegotiationMethods
from airflow_edc_callbacks.hooks.vault import SecretMethods


class EdcManagementHook(EdrMethods, NegotiationMethods, SecretMethods):
    """Client of an EDC connector's Management API, with a sync (operators) and an async (triggers) path.

    Retries connection errors and, for idempotent calls (GET), timeouts, 429 and 500/502/503/504 with
    exponential backoff. A POST that may have reached the connector is not retried, so a transfer is never started
    twice by a retry.

    :param edc_conn_id: Airflow connection of type ``edc`` (default ``edc_default``).
    :param timeout: seconds per HTTP request.
    :param retries: extra attempts after the first.
    :param retry_wait: first backoff in seconds (doubles, at most 10 s).
    :param transport: an httpx transport for the sync client (proxies, tests); default httpx's.
    :param async_transport: the same for the async client (triggers).
    :param ledger: the callback store's side (:class:`~airflow_edc_callbacks.hooks.ledger.CallbackLedger`;
        the package's is :class:`airflow_edc_callbacks.ledger.StoreLedger`): with it, :meth:`start_transfer`
        and :meth:`start_negotiation` bind what they start to the task's callback token, EDR reads and
        refreshes of Tractus-X connections take the transfer's lock, and :meth:`get_edr` falls back to a
        stored ``TransferProcessStarted`` callback. The hook itself never imports the store.

    Every request method raises :class:`~airflow_edc_callbacks.exceptions.EdcApiError` when the connector
    answers an error status (with its ``ApiErrorDetail`` messages, e.g. 404 ``ObjectNotFound``) and
    :class:`~airflow_edc_callbacks.exceptions.EdcTransportError` when it cannot be reached.
    """

    conn_name_attr = "edc_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "edc"
    hook_name = "EDC Management API"
