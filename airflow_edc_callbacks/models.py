"""Pydantic models of EDC callback events and helpers for Management API JSON-LD.

EDC facts used here come from the EDC connector sources (v0.18.0):

* ``org.eclipse.edc.spi.event.EventEnvelope``: ``id`` (UUID, the same for every callback and every HTTP
  retry of one published event), ``at`` (epoch milliseconds), ``payload`` and ``type`` (the simple class
  name of the event, for example ``TransferProcessCompleted``).
* ``TransferProcessEvent`` and ``ContractNegotiationEvent`` payloads; ``participantContextId`` and
  ``protocol`` only exist since EDC 0.15, so every field but the process id is optional and unknown fields
  are kept.
* ``TransferProcessStates`` / ``ContractNegotiationStates``: the final states.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
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

EDC_NAMESPACE = "https://w3id.org/edc/v0.0.1/ns/"
"""The EDC JSON-LD vocabulary (``@vocab`` of Management API v3 requests)."""

EDC_CONTEXT: dict[str, Any] = {"@vocab": EDC_NAMESPACE}

MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays an accepted event body may have (the envelope is depth 1).

One limit for parsing (the receiver refuses deeper bodies with 422), storage and every reader (redaction
for output walks iteratively and cuts anything deeper). EDC's deepest payloads (a contract agreement's
ODRL policy inside ``ContractNegotiationFinalized``) stay far below it.
"""

MAX_EPOCH_MS = 253_402_300_799_999
"""The largest ``at`` accepted: 9999-12-31T23:59:59.999Z, the last instant ``datetime`` can show."""

MANAGEMENT_V2_CONTEXT = "https://w3id.org/edc/connector/management/v2"
"""The JSON-LD context of Management API v4 (``v4beta`` in EDC 0.14-0.16, ``v4`` from 0.17): its JSON
schemas require ``@context`` to be an array holding this IRI."""

__all__ = [
    "EDC_CONTEXT",
    "EDC_NAMESPACE",
    "MANAGEMENT_V2_CONTEXT",
    "MAX_EPOCH_MS",
    "MAX_JSON_DEPTH",
    "TERMINAL_TRANSFER_STATES",
    "TRACTUSX_AUTH_NAMESPACE",
    "EndpointDataReference",
    "EventEnvelope",
    "Outcome",
    "Source",
    "TransferEventType",
    "WaitFor",
    "as_list",
    "check_callback_events",
    "check_json_value",
    "context_terms",
    "expand_key",
    "expand_keys",
    "iso_from_epoch_ms",
    "jsonld_get",
    "normalize_jsonld",
    "process_id_field",
    "resolve_wait_for",
    "terminal_outcome",
]


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

TERMINAL_TRANSFER_EVENTS = frozenset({TransferEventType.COMPLETED.value, TransferEventType.TERMINATED.value})

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


def _strip_key(key: str) -> str:
    if key.startswith(EDC_NAMESPACE):
        return key[len(EDC_NAMESPACE) :]
    if key.startswith("edc:"):
        return key[4:]
    return key


def normalize_jsonld(value: Any) -> Any:
    """Normalise a compacted Management API JSON-LD document for reading.

    Keys in the EDC namespace lose their prefix (``edc:state`` and
    ``https://w3id.org/edc/v0.0.1/ns/state`` become ``state``), ``{"@value": x}`` becomes ``x``, and
    single-element arrays become their element (Titanium compacts with ``compactArrays=true``, so a list
    of one may come back either way). Read list fields with :func:`as_list`.
    """
    if isinstance(value, Mapping):
        if set(value) == {"@value"} or (set(value) <= {"@value", "@type", "@language"} and "@value" in value):
            return normalize_jsonld(value["@value"])
        return {_strip_key(str(k)): normalize_jsonld(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalize_jsonld(v) for v in value]
        return items[0] if len(items) == 1 else items
    return value


def as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list: ``None`` -> ``[]``, ``x`` -> ``[x]``, a list unchanged.

    The one reader of every list field of connector JSON (``callbackAddresses``, ``events``, a catalog's
    ``dcat:dataset`` and ``odrl:hasPolicy``, query results, error details): EDC's JSON-LD compaction
    turns a one-element array into the element itself (eclipse-tractusx/tractus-x-umbrella#353).
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


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


def jsonld_get(document: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``key`` from a Management API document, whatever form of the key the connector used."""
    for candidate in (key, f"edc:{key}", f"{EDC_NAMESPACE}{key}"):
        if candidate in document:
            return normalize_jsonld(document[candidate])
    return default


def iso_from_epoch_ms(epoch_ms: int) -> str:
    """ISO 8601 UTC text of an epoch-milliseconds time, e.g. an envelope's ``at``.

    Never raises: a value outside what ``datetime`` holds (years 1 to 9999; stores written before the
    receiver bounded ``at`` may hold one) is shown as ``<n> ms``.
    """
    try:
        return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError, TypeError):
        return f"{epoch_ms} ms"


TRACTUSX_AUTH_NAMESPACE = "https://w3id.org/tractusx/auth/"
"""The Tractus-X vocabulary of EDR refresh data (``refreshToken``, ``refreshEndpoint``, ``expiresIn``,
``audience``; Tractus-X EDC's ``TxIatpConstants`` / refresh token grant profile)."""

_KNOWN_PREFIXES = {"edc": EDC_NAMESPACE, "tx-auth": TRACTUSX_AUTH_NAMESPACE}
"""Prefixes read even when a document's ``@context`` does not define them (connectors compact with them)."""


def context_terms(context: Any) -> tuple[dict[str, str], str | None]:
    """The term definitions and ``@vocab`` of an inline JSON-LD ``@context``.

    Offline by design: a context given by URL (a string) is skipped, never fetched; only inline objects
    count (an object, or an array of objects and URLs, later entries overriding earlier ones). A term
    defined as a string or as ``{"@id": ...}`` maps to that IRI (possibly compact, see :func:`expand_key`);
    ``"@vocab": null`` clears the vocabulary.

    :param context: the document's ``@context`` value, or ``None``.
    :returns: ``(terms, vocab)``: term -> IRI as written, and the ``@vocab`` IRI or ``None``.
    """
    terms: dict[str, str] = {}
    vocab: str | None = None
    for entry in as_list(context):
        if not isinstance(entry, Mapping):
            continue  # a remote context: never fetched at run time
        for term, definition in entry.items():
            if term == "@vocab":
                vocab = str(definition) if definition else None
            elif not str(term).startswith("@"):
                iri = definition.get("@id") if isinstance(definition, Mapping) else definition
                if isinstance(iri, str):
                    terms[str(term)] = iri
    return terms, vocab


def expand_key(key: str, terms: Mapping[str, str], vocab: str | None, default_vocab: str | None = None) -> str:
    """The IRI a JSON-LD key stands for, as JSON-LD expansion finds it for a key (no network, no scoped contexts).

    Keywords (``@type``) stay; a defined term maps to its IRI; ``prefix:suffix`` with a defined prefix
    (or ``edc:`` / ``tx-auth:`` when the context does not define them) becomes the prefix's IRI plus the
    suffix; any other key with a colon is taken as an absolute IRI; a bare key gets ``vocab`` (else
    ``default_vocab``, else stays as it is).
    """
    if key.startswith("@"):
        return key
    if key in terms:
        iri = terms[key]
        return iri if iri == key else expand_key(iri, {k: v for k, v in terms.items() if k != key}, None)
    prefix, colon, suffix = key.partition(":")
    if colon and not suffix.startswith("//"):
        if prefix in terms:
            return terms[prefix] + suffix
        if prefix in _KNOWN_PREFIXES:
            return _KNOWN_PREFIXES[prefix] + suffix
    if colon:
        return key
    base = vocab or default_vocab
    return base + key if base else key


def expand_keys(document: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The top-level keys of ``document`` expanded to IRIs with its own ``@context`` (or ``context`` when
    it has none); bare keys without an ``@vocab`` are read in the EDC namespace. Values are normalised
    (:func:`normalize_jsonld`); the ``@context`` itself is left out."""
    terms, vocab = context_terms(document.get("@context", context))
    return {
        expand_key(str(k), terms, vocab, EDC_NAMESPACE): normalize_jsonld(v)
        for k, v in document.items()
        if k != "@context"
    }


def _int_seconds(value: Any) -> int | None:
    """``expiresIn`` as an int: the wire carries a string such as ``"300"``; unreadable is ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(str(value).strip()))
    except ValueError:
        return None


@dataclass(frozen=True)
class EndpointDataReference:
    """The EDR of a started PULL transfer: where to fetch the data and the token to show.

    EDC facts: the provider's data plane creates it as a ``DataAddress`` of type
    ``https://w3id.org/idsa/v4.1/HTTP`` with ``endpoint``, ``authType`` (``bearer``), ``authorization``
    (the token, sent as the ``Authorization`` header as is) and ``endpointType``
    (``DataPlaneAuthorizationServiceImpl``); the consumer gets it with ``TransferProcessStarted``
    (``dataAddress``) and serves it at ``GET /v3/edrs/{id}/dataaddress`` (``EdrCacheApiV3Controller``).
    Tractus-X EDC adds refresh data in :data:`TRACTUSX_AUTH_NAMESPACE` (``refreshToken``,
    ``refreshEndpoint``, ``expiresIn`` as a string of seconds, ``audience``).

    The tokens never show in ``repr`` or ``str``.

    :ivar transfer_process_id: the consumer's transfer process id.
    :ivar endpoint: the provider's public endpoint URL.
    :ivar authorization: the access token.
    :ivar auth_type: ``bearer`` for EDC's data plane.
    :ivar endpoint_type: e.g. ``https://w3id.org/idsa/v4.1/HTTP``.
    :ivar source: where it came from: ``connector`` (the EDR cache) or ``callback`` (the stored event).
    :ivar refresh_token: Tractus-X: the token to present when refreshing, or ``None``.
    :ivar refresh_endpoint: Tractus-X: the provider's refresh URL, or ``None``.
    :ivar expires_in: Tractus-X: the access token's lifetime in seconds, or ``None``.
    :ivar audience: Tractus-X: the audience of the refresh request (the consumer's DID), or ``None``.
    :ivar read_at: when this EDR was read, epoch seconds (see :meth:`expired`).
    """

    transfer_process_id: str
    endpoint: str
    authorization: str | None = field(repr=False)
    auth_type: str | None = None
    endpoint_type: str | None = None
    source: str = "connector"
    refresh_token: str | None = field(default=None, repr=False)
    refresh_endpoint: str | None = None
    expires_in: int | None = None
    audience: str | None = None
    read_at: int = field(default_factory=lambda: int(time.time()), compare=False)

    @classmethod
    def from_data_address(
        cls, transfer_process_id: str, data_address: Mapping[str, Any], source: str = "connector"
    ) -> EndpointDataReference:
        """Read an EDR ``DataAddress`` in any of its key shapes.

        Shapes: full IRIs (the ``TransferProcessStarted`` callback, inside ``properties``); prefixed keys
        resolved with the document's ``@context`` (the older Tractus-X EDR API: ``tx-auth:refreshToken``
        with ``"tx-auth": "https://w3id.org/tractusx/auth/"``); bare EDC keys next to full Tractus-X IRIs
        (Tractus-X EDC 0.11 / 0.12); ``edc:``-prefixed and expanded (``[{"@value": ...}]``) forms. Keys
        of ``properties`` are read with the same context; keys of the address itself win.

        :raises ValueError: it has no ``endpoint``.
        """
        context = data_address.get("@context")
        address = expand_keys(data_address, context)
        properties = address.get(f"{EDC_NAMESPACE}properties")
        merged = {**(expand_keys(properties, context) if isinstance(properties, Mapping) else {}), **address}

        def edc(name: str) -> Any:
            return merged.get(f"{EDC_NAMESPACE}{name}")

        def tx(name: str) -> Any:
            value = merged.get(f"{TRACTUSX_AUTH_NAMESPACE}{name}")
            return str(value) if value not in (None, "") else None

        endpoint = edc("endpoint")
        if not endpoint:
            raise ValueError(f"the data address of transfer process {transfer_process_id} has no endpoint")
        authorization = edc("authorization")
        return cls(
            transfer_process_id=transfer_process_id,
            endpoint=str(endpoint),
            authorization=str(authorization) if authorization else None,
            auth_type=edc("authType"),
            endpoint_type=edc("endpointType") or edc("type"),
            source=source,
            refresh_token=tx("refreshToken"),
            refresh_endpoint=tx("refreshEndpoint"),
            expires_in=_int_seconds(merged.get(f"{TRACTUSX_AUTH_NAMESPACE}expiresIn")),
            audience=tx("audience"),
        )

    @property
    def expires_at(self) -> int | None:
        """Epoch seconds at which the token has expired at the latest: ``read_at + expires_in`` (the
        connector's cache may have held it for a while already), ``None`` without ``expires_in``."""
        return None if self.expires_in is None else self.read_at + self.expires_in

    def expired(self, now: float | None = None, leeway: float = 0.0) -> bool:
        """Whether the token has expired by ``now`` (epoch seconds, default the current time), ``leeway``
        seconds early; always ``False`` without ``expires_in`` (EDC core's tokens carry none)."""
        expires_at = self.expires_at
        return expires_at is not None and (time.time() if now is None else now) + leeway >= expires_at

    def secrets(self) -> list[str]:
        """The tokens it holds (for the secrets masker)."""
        return [s for s in (self.authorization, self.refresh_token) if s]

    def headers(self) -> dict[str, str]:
        """The request headers the provider's public API expects: ``Authorization: <token>``."""
        return {"Authorization": self.authorization} if self.authorization else {}
