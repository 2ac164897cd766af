"""Exceptions raised by airflow-edc-callbacks. All derive from :class:`EdcCallbacksError`."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "EdcApiError",
    "EdcCallbacksError",
    "EdcDataFetchError",
    "EdcEdrNotFound",
    "EdcEdrRefused",
    "EdcNegotiationFailed",
    "EdcNegotiationTimeout",
    "EdcProcessTimeout",
    "EdcTransferFailed",
    "EdcTransferTimeout",
    "EdcTransportError",
    "EventConflictError",
    "ProcessBoundElsewhereError",
    "StoreUnavailableError",
    "TriggerEventError",
]


class EdcCallbacksError(Exception):
    """Root of every error this package raises."""


class EdcApiError(EdcCallbacksError):
    """The connector's Management API answered with an error status.

    :param status_code: the HTTP status.
    :param method: the HTTP method.
    :param url: the full request URL.
    :param messages: the ``message`` of each ``ApiErrorDetail`` the connector returned (EDC
        ``org.eclipse.edc.api.model.ApiErrorDetail``), or an excerpt of the body when it was not JSON.
    """

    def __init__(self, status_code: int, method: str, url: str, messages: Sequence[str]) -> None:
        self.status_code = status_code
        self.method = method
        self.url = url
        self.messages = list(messages)
        detail = "; ".join(self.messages) or "no error detail"
        super().__init__(f"EDC Management API {method} {url} answered {status_code}: {detail}")


class EdcTransportError(EdcCallbacksError):
    """The connector could not be reached (connection refused, DNS, timeout) after the retries."""


class EdcTransferFailed(EdcCallbacksError):
    """A transfer process ended ``TERMINATED`` (or otherwise failed) on the connector.

    :param transfer_process_id: the consumer's transfer process id.
    :param connector_url: the Management API base URL of the connector.
    :param state: the last state seen.
    :param reason: the connector's reason (``TransferProcessTerminated.reason`` / ``errorDetail``).
    """

    def __init__(self, transfer_process_id: str, connector_url: str, state: str, reason: str | None) -> None:
        self.transfer_process_id = transfer_process_id
        self.connector_url = connector_url
        self.state = state
        self.reason = reason
        super().__init__(
            f"EDC transfer process {transfer_process_id} on {connector_url} ended {state}: "
            f"{reason or 'the connector gave no reason'}"
        )


class EdcNegotiationFailed(EdcCallbacksError):
    """A contract negotiation ended ``TERMINATED`` on the connector.

    :param contract_negotiation_id: the consumer's contract negotiation id.
    :param connector_url: the Management API base URL of the connector.
    :param reason: the connector's ``errorDetail`` of the negotiation.
    """

    def __init__(self, contract_negotiation_id: str, connector_url: str, reason: str | None) -> None:
        self.contract_negotiation_id = contract_negotiation_id
        self.connector_url = connector_url
        self.reason = reason
        super().__init__(
            f"EDC contract negotiation {contract_negotiation_id} on {connector_url} ended TERMINATED: "
            f"{reason or 'the connector gave no reason'}"
        )


class EdcProcessTimeout(EdcCallbacksError):
    """A waited-for process did not reach the awaited state within the task's ``timeout``.

    Not a subclass of Airflow's ``AirflowTaskTimeout``: that one derives from ``BaseException`` and means
    Airflow interrupted the task's code (``execution_timeout``); here the wait ended on its own terms and
    the task fails like on any other error (retries apply).

    :param process_id: the transfer process or contract negotiation id.
    :param connector_url: the Management API base URL of the connector.
    :param state: the last state known (from the last callback, or a state check at the time-out);
        ``UNKNOWN`` when neither answered.
    :param waited_seconds: how long the task waited.
    :param terminated: what became of the process: e.g. ``"terminated on the connector"``, or ``None``.
    :param reason: why the wait ended before the task's ``timeout``, e.g. ``"no change from STARTED for
        600 s (stall_timeout 600 s)"``; ``None`` at the task's ``timeout``.
    """

    LABEL = "process"

    def __init__(
        self,
        process_id: str,
        connector_url: str,
        state: str,
        waited_seconds: float,
        terminated: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.process_id = process_id
        self.connector_url = connector_url
        self.state = state
        self.waited_seconds = waited_seconds
        self.terminated = terminated
        self.reason = reason
        why = f": {reason}" if reason else ""
        after = f"; {terminated}" if terminated else ""
        super().__init__(
            f"EDC {self.LABEL} {process_id} on {connector_url} timed out after {waited_seconds:.0f} s "
            f"in state {state}{why}{after}"
        )


class EdcTransferTimeout(EdcProcessTimeout):
    """A transfer process did not reach the awaited state in time (see :class:`EdcProcessTimeout`)."""

    LABEL = "transfer process"

    @property
    def transfer_process_id(self) -> str:
        """The consumer's transfer process id."""
        return self.process_id


class EdcNegotiationTimeout(EdcProcessTimeout):
    """A contract negotiation did not end in time (see :class:`EdcProcessTimeout`)."""

    LABEL = "contract negotiation"

    @property
    def contract_negotiation_id(self) -> str:
        """The consumer's contract negotiation id."""
        return self.process_id


class EdcEdrNotFound(EdcCallbacksError):
    """No EDR is known for a transfer process.

    :param transfer_process_id: the consumer's transfer process id.
    :param connector_url: the Management API base URL of the connector.
    :param detail: what was tried and what the connector said.
    """

    def __init__(self, transfer_process_id: str, connector_url: str, detail: str) -> None:
        self.transfer_process_id = transfer_process_id
        self.connector_url = connector_url
        super().__init__(
            f"No EDR for transfer process {transfer_process_id} on {connector_url}: {detail}. An EDR exists once a "
            "PULL transfer is STARTED and until it is terminated or completed."
        )


class EdcDataFetchError(EdcCallbacksError):
    """The provider's public endpoint refused or failed a data request made with an EDR.

    :param transfer_process_id: the consumer's transfer process id.
    :param url: the requested URL.
    :param status_code: the HTTP status, or ``None`` when the endpoint could not be reached.
    :param detail: an excerpt of the answer, or the transport error.
    """

    def __init__(self, transfer_process_id: str, url: str, status_code: int | None, detail: str) -> None:
        self.transfer_process_id = transfer_process_id
        self.url = url
        self.status_code = status_code
        self.detail = detail
        answer = f"answered {status_code}" if status_code is not None else "could not be reached"
        super().__init__(f"Data request GET {url} for transfer process {transfer_process_id} {answer}: {detail}")


class EdcEdrRefused(EdcDataFetchError):
    """The provider's endpoint kept refusing (401/403) a transfer's EDR after it was read again once and,
    where the connector can refresh EDRs (Tractus-X EDC), refreshed once.

    :param transfer_process_id: the consumer's transfer process id.
    :param url: the requested URL, without its query.
    :param status_code: the last HTTP status (401 or 403).
    :param detail: an excerpt of the last answer.
    :param tried: what was tried, e.g. ``"re-read the EDR and refreshed it once"``.
    :param advice: what the user can do.
    """

    def __init__(
        self, transfer_process_id: str, url: str, status_code: int, detail: str, tried: str, advice: str
    ) -> None:
        EdcCallbacksError.__init__(
            self,
            f"Data request GET {url} for transfer process {transfer_process_id} answered {status_code} "
            f"({detail}) after the task {tried}: the provider no longer accepts this transfer's EDR. {advice}",
        )
        self.transfer_process_id = transfer_process_id
        self.url = url
        self.status_code: int | None = status_code
        self.detail = detail


class StoreUnavailableError(EdcCallbacksError):
    """The callback event store cannot be reached or written."""


class EventConflictError(EdcCallbacksError):
    """An event arrived with the envelope id of a stored event but another body; the stored one stays.

    :ivar envelope_id: the envelope id both deliveries carry.
    """

    def __init__(self, envelope_id: str) -> None:
        self.envelope_id = envelope_id
        super().__init__(f"Event {envelope_id} is stored with another body; this delivery is not stored")


class ProcessBoundElsewhereError(EdcCallbacksError):
    """A process is bound to the correlation id of another task instance (see ``EventStore.bind``).

    :ivar process_id: the transfer process or contract negotiation id.
    :ivar bound_to: the correlation id it is bound to.
    :ivar offered: the correlation id that was offered for it (a callback token's, or a task's).
    """

    def __init__(self, process_id: str, bound_to: str, offered: str) -> None:
        self.process_id = process_id
        self.bound_to = bound_to
        self.offered = offered
        super().__init__(
            f"Process {process_id} is bound to correlation id {bound_to}, not to {offered}: "
            "an event for it counts only with the token of the task instance that started it"
        )


class TriggerEventError(EdcCallbacksError):
    """A task resumed with a trigger event it cannot interpret: none, or a payload that is not the
    trigger's typed result (an unknown ``status``, a missing process id, a field of the wrong type); the
    message names what was wrong."""
