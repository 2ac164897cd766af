"""The callback event envelope as EDC sends it (``org.eclipse.edc.spi.event.EventEnvelope``): ``id`` (UUID, the
same for every delivery of one event), ``at`` (epoch milliseconds), ``type`` (the event's simple class name)
and ``payload`` (``TransferProcessEvent`` / ``ContractNegotiationEvent``; every field but the process id
optional, unknown fields kept), with the limits every accepted body keeps."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from airflow_edc_callbacks.models.jsonld import as_list

MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays an accepted event body may have (the envelope is depth 1).

One limit for parsing (the receiver refuses deeper bodies with 422), storage and every reader (redaction
for output walks iteratively and cuts anything deeper). EDC's deepest payloads (a contract agreement's
ODRL policy inside ``ContractNegotiationFinalized``) stay far below it.
"""

MAX_EPOCH_MS = 253_402_300_799_999
"""The largest ``at`` accepted: 9999-12-31T23:59:59.999Z, the last instant ``datetime`` can show."""


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FORMAT_CATEGORIES = frozenset({"Cf", "Cs", "Co", "Cn"})  # invisible, surrogate, private-use, unassigned


def _storable(value: object) -> object:
    """Reject strings a database cannot store as text: lone surrogates (from ``\\ud800`` escapes) and
    NUL characters (PostgreSQL text cannot hold them)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("string is not valid Unicode (lone surrogate)") from None
        if "\x00" in value:
            raise ValueError("string contains a NUL character")
    return value


def _identifier(value: str) -> str:
    """An id or type that goes into log lines and database columns: storable, no control characters
    (CR/LF would forge log lines), no invisible characters (zero-width, bidi overrides: look-alikes)."""
    _storable(value)
    if _CONTROL_CHARACTERS.search(value):
        raise ValueError("must not contain control characters")
    if any(unicodedata.category(ch) in _FORMAT_CATEGORIES for ch in value if not ch.isascii()):
        raise ValueError("must not contain invisible, private-use or unassigned characters")
    return value


def check_json_value(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Check a parsed JSON document against the receiver's input domain, without recursion.

    Nesting at most ``max_depth`` (a scalar or an empty container counts as its container's level; the
    envelope object is level 1), every string and key valid Unicode without NUL.

    :raises ValueError: naming the first rule broken.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            for key, child in item.items():
                _storable(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1) for child in item)
        else:
            _storable(item)


def _list_or_none(value: Any) -> Any:
    """A list field as JSON-LD compaction may send it: one element as itself, or ``null``."""
    return None if value is None else as_list(value)


class CallbackAddressModel(BaseModel):
    """A callback address as echoed in event payloads (EDC ``CallbackAddress``); ``events`` may come as
    one string and the payload's ``callbackAddresses`` as one object (compacted one-element arrays)."""

    model_config = ConfigDict(extra="allow")

    uri: str | None = None
    events: Annotated[list[str] | None, BeforeValidator(_list_or_none)] = None
    transactional: bool | None = None
    authKey: str | None = None
    authCodeId: str | None = None


ProcessId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_identifier)]


class EventPayload(BaseModel):
    """The ``payload`` of an event; every field is optional (checked for transfer process and contract
    negotiation events only).

    Unknown fields are kept (``extra="allow"``) so newer connectors' additions pass through.
    """

    model_config = ConfigDict(extra="allow")

    transferProcessId: ProcessId | None = None
    contractNegotiationId: ProcessId | None = None
    assetId: str | None = None
    contractId: str | None = None
    type: str | None = Field(default=None, description="CONSUMER or PROVIDER")
    participantContextId: str | None = None
    protocol: str | None = None
    reason: str | None = None
    callbackAddresses: Annotated[list[CallbackAddressModel] | None, BeforeValidator(_list_or_none)] = None

    @field_validator("*", mode="after")
    @classmethod
    def storable_strings(cls, value: object) -> object:
        return _storable(value)

    @property
    def process_id(self) -> str | None:
        """The transfer process id, or the contract negotiation id (see :attr:`EventEnvelope.process_id`,
        which also looks at the event type)."""
        return self.transferProcessId or self.contractNegotiationId


PROCESS_EVENT_ID_FIELDS: dict[str, str] = {
    "TransferProcess": "transferProcessId",
    "ContractNegotiation": "contractNegotiationId",
}
"""Event ``type`` prefixes this product acts on, and the payload field naming their process (EDC
``TransferProcessEvent`` and ``ContractNegotiationEvent``). Every other event type (``AssetCreated``,
``PolicyDefinitionCreated``... that a static callback with no ``events`` filter receives) is about no
process: it never reaches a transfer or negotiation waiter."""


def process_id_field(event_type: str) -> str | None:
    """The payload field that names the process of an event of ``event_type``, or ``None`` for an event
    type that is not about a transfer process or contract negotiation."""
    for prefix, field_name in PROCESS_EVENT_ID_FIELDS.items():
        if event_type.startswith(prefix):
            return field_name
    return None


class EventEnvelope(BaseModel):
    """The JSON body EDC POSTs to a callback address (``org.eclipse.edc.spi.event.EventEnvelope``).

    ``at`` is in epoch milliseconds (0 to :data:`MAX_EPOCH_MS`); ``type`` is the event class name, e.g.
    ``TransferProcessCompleted``. ``id`` and ``type`` hold no control characters. The payload of a
    transfer process or contract negotiation event must name its process (``transferProcessId`` /
    ``contractNegotiationId``) and is checked as :class:`EventPayload`; the payload of any other event
    type only has to be a JSON object (it is kept unchecked in an :class:`EventPayload`).
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200)
    at: int = Field(strict=True, ge=0, le=MAX_EPOCH_MS, description="epoch milliseconds")
    type: str = Field(min_length=1, max_length=200)
    payload: EventPayload

    @field_validator("id", "type", mode="after")
    @classmethod
    def plain_identifier(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("payload", mode="wrap")
    @classmethod
    def payload_of_its_type(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """Check the payload of a process event as :class:`EventPayload`; take any other event's JSON
        object as it is (its fields are none of this product's business)."""
        event_type = info.data.get("type")
        if isinstance(event_type, str) and process_id_field(event_type) is None and isinstance(value, dict):
            payload = EventPayload.model_construct()  # no keyword expansion: any key is data, even "cls"
            payload.__pydantic_extra__ = dict(value)
            return payload
        return handler(value)

    @model_validator(mode="after")
    def names_its_process(self) -> EventEnvelope:
        field_name = process_id_field(self.type)
        if field_name is not None and not getattr(self.payload, field_name):
            raise ValueError(f"a {self.type} event's payload must have {field_name}")
        return self

    @property
    def process_id(self) -> str | None:
        """The transfer process id or contract negotiation id this event is about; ``None`` for an event
        type that is not about a process (see :data:`PROCESS_EVENT_ID_FIELDS`)."""
        field_name = process_id_field(self.type)
        return getattr(self.payload, field_name) if field_name is not None else None


def check_callback_events(events: Any) -> tuple[str, ...]:
    """Check the ``events`` of a callback address; return them as a tuple of stripped prefixes.

    EDC sends an event to a callback address when the event's name starts with one of its ``events``
    (``CallbackEventDispatcher.matches``: ``events.stream().anyMatch(eventName::startsWith)``). So an
    empty list matches nothing: a dynamic callback address with ``events: []`` never fires. An empty
    prefix matches everything: a static callback's ``edc.callback.<name>.events`` of ``""`` subscribes
    to every event of the runtime (assets, policies, contract definitions...), and one without the
    setting stops the connector at start-up. Both are refused here.

    :param events: a sequence of prefixes such as ``["transfer.process"]`` (a single string is one prefix).
    :raises ValueError: no prefix, or an empty one.
    """
    if events is None or isinstance(events, str):
        events = as_list(events)
    items = tuple(str(e).strip() for e in events if e is not None)
    if not items:
        raise ValueError(
            "events must name at least one event prefix, e.g. ['transfer.process']: EDC matches event names "
            "by prefix, so a callback address with an empty events list never fires"
        )
    if any(not e for e in items):
        raise ValueError(
            "events must not hold an empty prefix: EDC matches event names by prefix, so an empty one "
            "subscribes to every event of the connector (assets, policies, contract definitions...)"
        )
    return items


def iso_from_epoch_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC text of an epoch-milliseconds time, e.g. an envelope's ``at``.

    Never raises: a value outside what ``datetime`` holds (years 1 to 9999; stores written before the
    receiver bounded ``at`` may hold one) is shown as ``<n> ms``.
    """
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError, TypeError):
        return f"{epoch_ms} ms"
