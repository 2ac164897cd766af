"""Storing a received callback event: the store write, its typed outcome, and the store's faults as answers."""

from __future__ import annotations

import logging

from starlette.background import BackgroundTask

from airflow_edc_callbacks.exceptions import EventConflictError, ProcessBoundElsewhereError, StoreUnavailableError
from airflow_edc_callbacks.receiver.body import ReceivedEvent
from airflow_edc_callbacks.receiver.responses import CallbackOutcome, CallbackRejected
from airflow_edc_callbacks.receiver.settings import ReceiverSettings
from airflow_edc_callbacks.store.events import NewEvent

log = logging.getLogger(__name__)


async def store_event(
    cfg: ReceiverSettings, event: ReceivedEvent, *, correlation_id: str | None, route: str
) -> CallbackOutcome:
    """Commit ``event`` to the store; returns only once it is durable.

    Through the app's :class:`~airflow_edc_callbacks.receiver.group_commit.GroupCommitter`: a lone callback is
    written at once, concurrent ones are committed together (one transaction), each answered after the
    commit that includes it.

    :param correlation_id: the dynamic token's correlation id, ``None`` for a static callback.
    :param route: ``"dynamic"`` or ``"static:<name>"`` (stored with the event).
    :returns: :attr:`CallbackOutcome.STORED`, or :attr:`CallbackOutcome.DUPLICATE` when this envelope id is
        stored with the same body already (logged at DEBUG after the answer, see :func:`log_outcome`).
    :raises CallbackRejected: 503 with ``Retry-After`` (the store cannot be opened or written), 403 (the
        process is bound to another task instance than the token's), 409 (this envelope id is stored with
        another body; the stored one stays), 422 (the database refused a value).
    """
    envelope = event.envelope
    try:
        inserted = await cfg.group_committer().record(NewEvent(envelope, event.body, correlation_id, route))
    except StoreUnavailableError as err:
        log.error("Callback %s (%s) not stored: %s", envelope.id, envelope.type, err)
        raise CallbackRejected(503, "Event store unavailable", {"Retry-After": "5"}) from None
    except ProcessBoundElsewhereError as err:
        log.warning(
            "Callback %s (%s) refused: process %s is bound to another task instance than the token's (%s)",
            envelope.id,
            envelope.type,
            err.process_id,
            err.offered,
        )
        raise CallbackRejected(
            403, f"This callback token is not the one of the task that started {err.process_id}"
        ) from None
    except EventConflictError:
        log.warning(
            "Callback %s (%s) for %s via %s: this envelope id is stored with another body; kept the stored one",
            envelope.id,
            envelope.type,
            envelope.process_id,
            route,
        )
        raise CallbackRejected(409, "An event with this id and another body is stored") from None
    except (ValueError, OverflowError, RecursionError) as err:  # the database refused a value
        log.warning("Callback %s (%s) not storable: %s", envelope.id, envelope.type, type(err).__name__)
        raise CallbackRejected(422, "Event envelope has values the store cannot hold") from None
    return CallbackOutcome.STORED if inserted else CallbackOutcome.DUPLICATE


def log_outcome(event: ReceivedEvent, route: str, outcome: CallbackOutcome) -> BackgroundTask | None:
    """The DEBUG line of a stored callback (one per callback), as a task to run once the answer is sent, off the
    callback's latency; ``None`` when DEBUG is off for this logger.

    DEBUG, not INFO: Airflow's log formatting of one line costs about as much CPU as the rest of the answer,
    and what it would say is already in the api-server's access log (each POST and its status), the waiting
    task's log (each callback it took) and the store (``airflow-edc-callbacks timeline``).
    """
    if not log.isEnabledFor(logging.DEBUG):
        return None
    envelope = event.envelope
    return BackgroundTask(
        _log_debug,
        "Callback %s %s for %s via %s (%s)",
        envelope.type,
        envelope.id,
        envelope.process_id or "no process",
        route,
        outcome.value,
    )


async def _log_debug(message: str, *args: object) -> None:
    log.debug(message, *args)  # a coroutine: Starlette runs it on the event loop, a function in a thread
