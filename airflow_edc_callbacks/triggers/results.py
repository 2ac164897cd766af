"""The typed contract between a waiting trigger and the task it resumes.

A trigger yields its result as a JSON object (Airflow serializes trigger events); the task validates it
back into the same model on resume, so a malformed event raises :class:`TriggerEventError` naming what
was wrong instead of a ``KeyError`` somewhere later. Wire shape (unchanged since the strings-and-dicts
version): ``status`` (:class:`~airflow_edc_callbacks.models.Outcome` value), the process id under its
own key, ``correlation_id``, ``state``, ``event_type``, ``reason``, ``source``
(:class:`~airflow_edc_callbacks.models.Source` value or ``null``), the kind's own fields, ``timeline``
and, for a time-out only, ``waited_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_edc_callbacks.exceptions import TriggerEventError
from airflow_edc_callbacks.models import Outcome, Source, iso_from_epoch_ms


class TimelineEntry(BaseModel):
    """One callback event of a wait, as it goes to XCom: no payload, so no EDR token.

    ``at`` and ``received_at`` are epoch milliseconds (connector clock, receiver clock).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    at: int
    received_at: int
    envelope_id: str | None = None
    routes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object (only the fields the entry was given: the wire shape round-trips)."""
        return self.model_dump(mode="json", exclude_unset=True)


class WaitResult(BaseModel):
    """What a process trigger tells its task: how the wait ended and what is known of the process."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ID_FIELD: ClassVar[str]
    """The key of the process id in the payload."""

    status: Outcome
    correlation_id: str | None = None
    state: str | None = None
    event_type: str | None = None
    reason: str | None = None
    source: Source | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    waited_seconds: float | None = None

    @property
    def process_id(self) -> str:
        """The transfer process id or contract negotiation id."""
        return str(getattr(self, self.ID_FIELD))

    def to_payload(self) -> dict[str, Any]:
        """The trigger event's JSON payload (``waited_seconds`` only for a time-out)."""
        payload = self.model_dump(mode="json", exclude={"timeline", "waited_seconds"})
        payload["timeline"] = self.timeline_json()
        if self.waited_seconds is not None:
            payload["waited_seconds"] = self.waited_seconds
        return payload

    def timeline_json(self) -> list[dict[str, Any]]:
        """The timeline as JSON objects (XCom)."""
        return [entry.to_json() for entry in self.timeline]

    def log_timeline(self, log: Any, label: str) -> None:
        """Write each callback event of the timeline to ``log`` (a task's log) with its times."""
        for item in self.timeline:
            log.info(
                "%s %s: %s at %s (received %s)",
                label,
                self.process_id,
                item.type,
                iso_from_epoch_ms(item.at),
                iso_from_epoch_ms(item.received_at),
            )


class TransferResult(WaitResult):
    """The result of :class:`~airflow_edc_callbacks.triggers.callback.EdcCallbackTrigger`."""

    ID_FIELD: ClassVar[str] = "transfer_process_id"

    transfer_process_id: str = Field(min_length=1)
    asset_id: str | None = None
    contract_id: str | None = None

    def xcom(self) -> dict[str, Any]:
        """The task's XCom result (see :class:`~airflow_edc_callbacks.operators.EdcTransferOperator`)."""
        return {
            "transfer_process_id": self.transfer_process_id,
            "state": self.state,
            "asset_id": self.asset_id,
            "contract_id": self.contract_id,
            "event_type": self.event_type,
            "source": None if self.source is None else self.source.value,
            "correlation_id": self.correlation_id,
            "timeline": self.timeline_json(),
        }


class NegotiationResult(WaitResult):
    """The result of :class:`~airflow_edc_callbacks.triggers.negotiation.EdcNegotiationTrigger`."""

    ID_FIELD: ClassVar[str] = "contract_negotiation_id"

    contract_negotiation_id: str = Field(min_length=1)
    contract_agreement_id: str | None = None
    asset_id: str | None = None
    counter_party_id: str | None = None

    def xcom(self, asset_id: str | None = None) -> dict[str, Any]:
        """The task's XCom result (see :class:`~airflow_edc_callbacks.operators.EdcContractNegotiationOperator`);
        ``asset_id``: the task's, when the result names none."""
        return {
            "contract_negotiation_id": self.contract_negotiation_id,
            "contract_agreement_id": self.contract_agreement_id,
            "state": self.state,
            "asset_id": self.asset_id or asset_id,
            "counter_party_id": self.counter_party_id,
            "source": None if self.source is None else self.source.value,
            "timeline": self.timeline_json(),
        }


class WatchedEvent(BaseModel):
    """The payload of :class:`~airflow_edc_callbacks.triggers.events.EdcCallbackEventTrigger` (what a
    sensor resumes with once it found the transfer to follow)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    process_id: str = Field(min_length=1)
    event_type: str
    envelope_id: str | None = None


_Result = TypeVar("_Result", bound=BaseModel)


def parse_event(model: type[_Result], event: Mapping[str, Any] | None, task_id: str) -> _Result:
    """Validate a trigger event's payload on resume.

    :param model: the result model the trigger yields.
    :param task_id: the resuming task (for the message).
    :raises TriggerEventError: no event, or a payload that is not ``model`` (names each wrong field).
    """
    if not event:
        raise TriggerEventError(f"Task {task_id} resumed without a trigger event (got {event!r})")
    if not isinstance(event, Mapping):
        raise TriggerEventError(f"Task {task_id} resumed with a trigger event that is no JSON object: {event!r}")
    try:
        return model.model_validate(dict(event))
    except ValidationError as err:
        raise TriggerEventError(
            f"Task {task_id} resumed with a malformed {model.__name__} event: {_problems(err.errors())}"
        ) from None


def _problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's errors as ``field: message (got value)``, joined; values cut to 80 characters."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ())) or "event"
        got = "" if error.get("type") == "missing" else f" (got {str(error.get('input'))[:80]!r})"
        parts.append(f"{where}: {error.get('msg')}{got}")
    return "; ".join(parts)
