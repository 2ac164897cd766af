"""``EdcLineageMixin``: the OpenLineage methods and asset events the provider's operators and sensor share.

The OpenLineage provider calls ``get_openlineage_facets_on_start`` when the task starts (and again when a
deferred task resumes), ``..._on_complete`` after it succeeded and ``..._on_failure`` after it failed, in the
worker, on the same operator object that ran ``execute`` / ``execute_complete``. What the task learnt on
the way (its trigger's event, its fetch) is noted on the object with :meth:`EdcLineageMixin.lineage_note`
and ends up in the facets. None of these ever raises into the task, and none asks the connector anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_edc_callbacks.lineage.assets import set_outlet_extra, transfer_event_extra
from airflow_edc_callbacks.lineage.facets import TransferFacts, operator_lineage
from airflow_edc_callbacks.redaction import redact_text

_FIELDS = (
    "counter_party_address",
    "counter_party_id",
    "asset_id",
    "contract_id",
    "transfer_process_id",
    "transfer_type",
)


def _text(value: Any) -> str | None:
    """A rendered field as text, ``None`` when empty or not text (e.g. an unrendered ``XComArg``)."""
    return value.strip() or None if isinstance(value, str) else None


def facts_from_event(event: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a trigger event (a transfer's or a negotiation's wait result) says, as
    :class:`~airflow_edc_callbacks.lineage.facets.TransferFacts` fields: ids, state, source, the
    timeline's last event type and, for a failed or timed-out wait, the reason."""
    if not isinstance(event, Mapping):
        return {}
    timeline = event.get("timeline") or []
    last = timeline[-1] if isinstance(timeline, list) and timeline and isinstance(timeline[-1], Mapping) else {}
    state = event.get("state")
    known: dict[str, Any] = {
        "transfer_process_id": event.get("transfer_process_id"),
        "contract_negotiation_id": event.get("contract_negotiation_id"),
        "asset_id": event.get("asset_id"),
        "contract_id": event.get("contract_id") or event.get("contract_agreement_id"),
        "counter_party_id": event.get("counter_party_id"),
        "state": state,
        "source": event.get("source"),
        "terminal_event": last.get("type") or event.get("event_type"),
    }
    status = event.get("status")
    if status == "failed":
        known["failure_reason"] = event.get("reason") or f"ended {state or 'TERMINATED'} without a reason"
    elif status == "timeout":
        why = f": {event['reason']}" if isinstance(event.get("reason"), str) and event["reason"] else ""
        known["failure_reason"] = f"timed out after {event.get('waited_seconds') or 0:.0f} s in state {state}{why}"
    return {k: v for k, v in known.items() if isinstance(v, (str, int)) and v != ""}


class EdcLineageMixin:
    """OpenLineage facets and asset-event ``extra`` for an EDC operator or sensor.

    The input is the provider's asset (``counter_party_address`` and ``asset_id``), the output the data
    destination (a PUSH ``data_destination``, or the file a PULL fetch writes), the run facet ``edcTransfer``
    (:mod:`~airflow_edc_callbacks.lineage.facets`). An operator overrides :meth:`lineage_facts` for fields
    named differently, and calls :meth:`lineage_note` with what it learns.
    """

    def lineage_known(self) -> dict[str, Any]:
        """What the task noted so far (a dict on the operator object, made on first use)."""
        known = self.__dict__.get("_edc_lineage_known")
        if known is None:
            known = {}
            self.__dict__["_edc_lineage_known"] = known
        return known

    def lineage_note(self, event: Mapping[str, Any] | None = None, **known: Any) -> None:
        """Note what a trigger ``event`` says (see :func:`facts_from_event`) and any ``known`` facts
        (``file``, ``size``, ``sha256``, ``failure_reason``...). Never raises."""
        try:
            noted = self.lineage_known()
            noted.update(facts_from_event(event))
            noted.update({k: v for k, v in known.items() if v is not None})
        except Exception:  # lineage never breaks a task
            return

    def lineage_facts(self) -> TransferFacts:
        """The task's rendered fields as facts (``counter_party_address``, ``counter_party_id``, ``asset_id``,
        ``contract_id``, ``transfer_process_id``, ``transfer_type``; ``data_destination`` for a PUSH)."""
        facts = TransferFacts().merged(**{name: _text(getattr(self, name, None)) for name in _FIELDS})
        destination = getattr(self, "data_destination", None)
        if isinstance(destination, Mapping) and not str(facts.transfer_type or "").upper().endswith("-PULL"):
            facts = facts.merged(data_destination=destination)
        return facts

    def _lineage(self, failed: bool) -> Any:
        facts = self.lineage_facts().merged(**self.lineage_known())
        if failed and not facts.failure_reason:
            facts = facts.merged(failure_reason="the task failed (see its log)")
        return operator_lineage(facts)

    def get_openlineage_facets_on_start(self) -> Any:
        """OpenLineage, task started: the asset, the destination and what is known of the transfer."""
        return self._lineage(failed=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any = None) -> Any:
        """OpenLineage, task succeeded: also the transfer process id, state, terminal event, source."""
        return self._lineage(failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any = None) -> Any:
        """OpenLineage, task failed: also the reason (the connector's, for a terminated transfer)."""
        return self._lineage(failed=True)

    def lineage_failed(self, err: BaseException) -> None:
        """Note why the task failed when nothing more precise was noted (the error's text, redacted)."""
        if "failure_reason" not in self.lineage_known():
            self.lineage_note(failure_reason=redact_text(str(err))[:2000] or type(err).__name__)

    def emit_transfer_assets(
        self, context: Mapping[str, Any], result: Mapping[str, Any], data: Mapping[str, Any] | None = None
    ) -> None:
        """Give each asset outlet of the task the transfer's asset-event ``extra``
        (:func:`~airflow_edc_callbacks.lineage.assets.transfer_event_extra`)."""
        outlets = getattr(self, "outlets", None) or []
        if outlets:
            set_outlet_extra(outlets, context, transfer_event_extra(result, data))
