"""Transfer processes and contract negotiations: event types, states, what a task waits for, and the
outcome of an event or a state (EDC ``TransferProcessStates`` / ``ContractNegotiationStates``)."""

from __future__ import annotations

from enum import Enum


class TransferEventType(str, Enum):
    """Envelope ``type`` values of transfer process events (EDC ``transfer-spi`` event classes)."""

    INITIATED = "TransferProcessInitiated"
    PREPARATION_REQUESTED = "TransferProcessPreparationRequested"
    PREPARED = "TransferProcessPrepared"
    PROVISIONED = "TransferProcessProvisioned"
    REQUESTED = "TransferProcessRequested"
    STARTED = "TransferProcessStarted"
    SUSPENDED = "TransferProcessSuspended"
    RESUMED = "TransferProcessResumed"
    COMPLETED = "TransferProcessCompleted"
    TERMINATED = "TransferProcessTerminated"


TRANSFER_EVENT_PREFIX = "TransferProcess"
"""Envelope ``type`` prefix of every transfer process event."""


TERMINAL_TRANSFER_STATES = frozenset({"COMPLETED", "TERMINATED", "DEPROVISIONED"})
"""Final transfer process states (``TransferProcessStates.isFinal`` in EDC 0.18)."""

FINAL_PROCESS_STATES = TERMINAL_TRANSFER_STATES | {"FINALIZED"}
"""States of a transfer process or contract negotiation (``FINALIZED``) that a terminate cannot change."""

SUSPENSION_TRANSFER_STATES = frozenset({"SUSPENDING", "SUSPENDING_REQUESTED", "SUSPENDED", "RESUMING", "RESUMED"})
"""States of a suspended transfer and of one being resumed (EDC ``TransferProcessStates`` 650-725): not
final, so a waiting task keeps waiting; on resume EDC 0.15-0.17 send ``TransferProcessStarted`` again
(the provider's new ``TransferStartMessage``), EDC 0.18+ also send ``TransferProcessResumed``."""

SUSPENSION_TRANSFER_EVENTS = frozenset({TransferEventType.SUSPENDED.value, TransferEventType.RESUMED.value})
"""Events of a transfer's suspension and resumption: shown in the timeline, never ending a wait."""


class WaitFor(str, Enum):
    """What an operator waits for: ``started`` (PULL: the EDR is ready) or ``completed`` (PUSH)."""

    AUTO = "auto"
    STARTED = "started"
    COMPLETED = "completed"


def resolve_wait_for(wait_for: str, transfer_type: str) -> WaitFor:
    """Resolve ``auto`` against the transfer type: ``*-PULL`` waits for started, anything else for completed.

    :param wait_for: ``"auto"``, ``"started"`` or ``"completed"``.
    :param transfer_type: the EDC transfer type, for example ``HttpData-PUSH`` or ``HttpData-PULL``.
    :raises ValueError: ``wait_for`` is not one of the three values.
    """
    try:
        value = WaitFor(wait_for)
    except ValueError:
        raise ValueError(f"wait_for must be one of {[w.value for w in WaitFor]}, got {wait_for!r}") from None
    if value is not WaitFor.AUTO:
        return value
    return WaitFor.STARTED if transfer_type.upper().endswith("-PULL") else WaitFor.COMPLETED


class Outcome(str, Enum):
    """How a wait ended (the ``status`` of a trigger's event): the process reached the awaited state, it
    failed (``TERMINATED``...), or the wait's deadline passed first."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"


class Source(str, Enum):
    """Where a waiting trigger learnt a process's state: a callback, or a state check on the connector."""

    CALLBACK = "callback"
    STATE_CHECK = "state_check"


def terminal_outcome(event_type: str, wait_for: WaitFor) -> Outcome | None:
    """Classify a transfer event for a waiting task.

    :returns: :attr:`Outcome.SUCCESS` when the event ends the wait successfully, :attr:`Outcome.FAILED` for
        ``TransferProcessTerminated``, otherwise ``None`` (keep waiting). A ``TransferProcessCompleted``
        also ends a wait for ``started`` (the transfer went past it). ``TransferProcessSuspended`` and
        ``TransferProcessResumed`` never end a wait (see :data:`SUSPENSION_TRANSFER_EVENTS`).
    """
    if event_type == TransferEventType.TERMINATED.value:
        return Outcome.FAILED
    if event_type == TransferEventType.COMPLETED.value:
        return Outcome.SUCCESS
    if event_type == TransferEventType.STARTED.value and wait_for is WaitFor.STARTED:
        return Outcome.SUCCESS
    return None


def state_outcome(state: str, wait_for: WaitFor) -> Outcome | None:
    """Classify a transfer process state read from the Management API, like :func:`terminal_outcome`.

    ``DEPROVISIONED`` (EDC up to 0.15 deprovisions completed and terminated transfers alike) is a
    failure: the state no longer tells whether the data arrived, and a false success is worse.
    ``SUSPENDING``, ``SUSPENDED``, ``RESUMING`` and ``RESUMED`` keep a task waiting
    (:data:`SUSPENSION_TRANSFER_STATES`): a suspended transfer is expected to be resumed or terminated.
    """
    state = state.upper()
    if state in ("TERMINATED", "DEPROVISIONED"):
        return Outcome.FAILED
    if state == "COMPLETED":
        return Outcome.SUCCESS
    if state == "STARTED" and wait_for is WaitFor.STARTED:
        return Outcome.SUCCESS
    return None
