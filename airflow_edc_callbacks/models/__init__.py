"""Pydantic models of EDC callback events and helpers for Management API JSON-LD.

EDC facts used here come from the EDC connector sources (v0.18.0): ``EventEnvelope``, the
``TransferProcessEvent`` / ``ContractNegotiationEvent`` payloads (``participantContextId`` and ``protocol``
only since EDC 0.15) and ``TransferProcessStates`` / ``ContractNegotiationStates``. One module per concern:
:mod:`.envelope`, :mod:`.processes`, :mod:`.jsonld`, :mod:`.edr`.
"""

from __future__ import annotations

from airflow_edc_callbacks.models.edr import (
    EndpointDataReference,
)
from airflow_edc_callbacks.models.envelope import (
    MAX_EPOCH_MS,
    MAX_JSON_DEPTH,
    PROCESS_EVENT_ID_FIELDS,
    CallbackAddressModel,
    EventEnvelope,
    EventPayload,
    ProcessId,
    check_callback_events,
    check_json_value,
    iso_from_epoch_ms,
    process_id_field,
)
from airflow_edc_callbacks.models.jsonld import (
    EDC_CONTEXT,
    EDC_NAMESPACE,
    MANAGEMENT_V2_CONTEXT,
    TRACTUSX_AUTH_NAMESPACE,
    as_list,
    context_terms,
    expand_key,
    expand_keys,
    jsonld_get,
    normalize_jsonld,
)
from airflow_edc_callbacks.models.processes import (
    FINAL_PROCESS_STATES,
    SUSPENSION_TRANSFER_EVENTS,
    SUSPENSION_TRANSFER_STATES,
    TERMINAL_TRANSFER_STATES,
    TRANSFER_EVENT_PREFIX,
    Outcome,
    Source,
    TransferEventType,
    WaitFor,
    resolve_wait_for,
    state_outcome,
    terminal_outcome,
)

__all__ = [
    "EDC_CONTEXT",
    "EDC_NAMESPACE",
    "FINAL_PROCESS_STATES",
    "MANAGEMENT_V2_CONTEXT",
    "MAX_EPOCH_MS",
    "MAX_JSON_DEPTH",
    "PROCESS_EVENT_ID_FIELDS",
    "SUSPENSION_TRANSFER_EVENTS",
    "SUSPENSION_TRANSFER_STATES",
    "TERMINAL_TRANSFER_STATES",
    "TRACTUSX_AUTH_NAMESPACE",
    "TRANSFER_EVENT_PREFIX",
    "CallbackAddressModel",
    "EndpointDataReference",
    "EventEnvelope",
    "EventPayload",
    "Outcome",
    "ProcessId",
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
    "state_outcome",
    "terminal_outcome",
]
