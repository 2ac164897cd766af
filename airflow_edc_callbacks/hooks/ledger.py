"""``CallbackLedger``: what the hook needs from the callback store, as an interface the hook does not implement.

The hook never imports the store (loading the connection form must not load SQLAlchemy models or Alembic).
Callers that have a store pass an implementation to ``EdcManagementHook(ledger=...)``; the package's is
:class:`airflow_edc_callbacks.ledger.StoreLedger`, which the operators and the CLI use.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from airflow_edc_callbacks.models import EndpointDataReference


class CallbackLedger(Protocol):
    """Binding, EDR refresh locks and stored EDRs, kept by the callback store."""

    def bind(self, process_id: str, correlation_id: str) -> str:
        """Bind ``process_id`` to a task instance's correlation id unless it is bound already.

        :returns: the correlation id the process is bound to (another one when bound elsewhere).
        :raises StoreUnavailableError: the store cannot be written.
        """
        ...

    def edr_refresh_lock(self, transfer_process_id: str, lease: float) -> AbstractContextManager[None]:
        """Hold the transfer's EDR refresh lock (``lease`` seconds at most) while the block runs.

        :raises StoreUnavailableError: the lock stayed taken beyond twice its lease.
        """
        ...

    def stored_edr(
        self, transfer_process_id: str, transfer_state: Callable[[], str]
    ) -> tuple[EndpointDataReference | None, str]:
        """The EDR of the transfer's trusted stored ``TransferProcessStarted`` callback, if it may be used.

        :param transfer_state: asks the connector for the transfer's state (e.g. ``STARTED``).
        :returns: ``(edr, "")``, or ``(None, why not)``.
        """
        ...
