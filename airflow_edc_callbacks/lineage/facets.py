"""OpenLineage facets of a transfer, for the operators' ``get_openlineage_facets_on_*`` methods.

:class:`TransferFacts` holds what a task knows of its transfer (from its rendered fields, its trigger's
event, its fetch); :func:`operator_lineage` turns it into the OpenLineage provider's ``OperatorLineage``:
the provider's asset as input, the destination as output, and the run facet ``edcTransfer``
(:data:`RUN_FACET_NAME`), whose JSON schema ships in this package as ``lineage-facets.json``
(:data:`SCHEMA_URL` names where the documentation publishes it).

``apache-airflow-providers-openlineage`` is optional (extra ``[openlineage]``): it and the OpenLineage client
are imported inside :func:`operator_lineage` only, so without them nothing here fails at import, and
:func:`operator_lineage` returns ``None`` (the provider, absent, never calls it anyway).

Nothing secret goes into a facet: only ids, types, names (see :mod:`~airflow_edc_callbacks.lineage.naming`)
and the connector's reason, each through :func:`~airflow_edc_callbacks.redaction.redact_text`; never an
EDR, a token, an API key or a callback URL.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from typing import Any

from airflow_edc_callbacks import __version__
from airflow_edc_callbacks.lineage.naming import DatasetName, asset_dataset, destination_dataset, file_dataset
from airflow_edc_callbacks.redaction import redact_text

PRODUCER = f"https://airflow-edc-callbacks.readthedocs.io/en/latest/?version={__version__}"
"""The ``_producer`` of the facets: this provider, with its version."""

SCHEMA_URL = "https://airflow-edc-callbacks.readthedocs.io/en/latest/lineage-facets.json#/$defs/EdcTransferRunFacet"
"""The ``_schemaURL`` of the run facet (the file is :func:`schema`, published with the documentation)."""

RUN_FACET_NAME = "edcTransfer"
"""The key of the run facet in an OpenLineage event's ``run.facets``."""

SCHEMA_FILE = "lineage-facets.json"


def schema() -> str:
    """The JSON schema of the run facet, as shipped in the package (``lineage/lineage-facets.json``)."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@dataclass(frozen=True)
class TransferFacts:
    """What a task knows of its transfer (or negotiation) for lineage; every field optional.

    :ivar counter_party_address: the provider's DSP address (names the input's namespace).
    :ivar counter_party_id: the provider's participant id.
    :ivar asset_id: the provider's asset (the input's name).
    :ivar contract_id: the contract agreement id.
    :ivar contract_negotiation_id: the negotiation's id (negotiation and one-step operators).
    :ivar transfer_process_id: the consumer's transfer process id.
    :ivar transfer_type: e.g. ``HttpData-PUSH``.
    :ivar state: the last state known (``COMPLETED``, ``STARTED``, ``TERMINATED``...).
    :ivar terminal_event: the last callback event of the timeline, e.g. ``TransferProcessCompleted``.
    :ivar source: how the end was learnt: ``callback`` or ``state_check``.
    :ivar failure_reason: the connector's reason of a terminated process, or what failed.
    :ivar data_destination: a PUSH transfer's ``DataAddress`` (only its non-secret parts are used).
    :ivar file: the local file a PULL fetch wrote.
    :ivar size: its size in bytes.
    :ivar sha256: hex SHA-256 of its content.
    """

    counter_party_address: str | None = None
    counter_party_id: str | None = None
    asset_id: str | None = None
    contract_id: str | None = None
    contract_negotiation_id: str | None = None
    transfer_process_id: str | None = None
    transfer_type: str | None = None
    state: str | None = None
    terminal_event: str | None = None
    source: str | None = None
    failure_reason: str | None = None
    data_destination: Any = None
    file: str | None = None
    size: int | None = None
    sha256: str | None = None

    def merged(self, **known: Any) -> TransferFacts:
        """A copy with the non-empty values of ``known`` (unknown keys ignored) replacing these."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in known.items() if k in names and v not in (None, "")})

    def inputs(self) -> list[DatasetName]:
        """The provider's asset, when both its DSP address and its id are known (and the address is a URL)."""
        if not (self.counter_party_address and self.asset_id):
            return []
        try:
            return [asset_dataset(self.counter_party_address, self.asset_id)]
        except ValueError:
            return []

    def outputs(self) -> list[DatasetName]:
        """Where the data went: the fetched file, else a PUSH destination; empty when neither is known."""
        if self.file:
            return [file_dataset(self.file)]
        destination = destination_dataset(self.data_destination) if isinstance(self.data_destination, Mapping) else None
        return [destination] if destination else []

    def run_facet_fields(self) -> dict[str, Any]:
        """The run facet's fields (camelCase, as in the schema), only those known; text redacted."""
        values: dict[str, Any] = {
            "transferProcessId": self.transfer_process_id,
            "contractAgreementId": self.contract_id,
            "contractNegotiationId": self.contract_negotiation_id,
            "transferType": self.transfer_type,
            "counterPartyId": self.counter_party_id,
            "assetId": self.asset_id,
            "state": self.state,
            "terminalEvent": self.terminal_event,
            "source": self.source,
            "failureReason": self.failure_reason,
            "size": self.size,
            "sha256": self.sha256,
        }
        return {k: redact_text(v) if isinstance(v, str) else v for k, v in values.items() if v is not None}


@functools.cache
def _facet_class() -> Any:
    """The ``edcTransfer`` run facet: an attrs subclass of the OpenLineage client's ``RunFacet`` (made on
    first use, so the client is imported only when lineage is collected).

    :raises ImportError: the OpenLineage client is not installed.
    """
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class EdcTransferRunFacet(RunFacet):  # type: ignore[misc]
        """An EDC transfer (or negotiation) as this task saw it; see ``lineage-facets.json``."""

        transferProcessId: str | None = attr.field(default=None, kw_only=True)
        contractAgreementId: str | None = attr.field(default=None, kw_only=True)
        contractNegotiationId: str | None = attr.field(default=None, kw_only=True)
        transferType: str | None = attr.field(default=None, kw_only=True)
        counterPartyId: str | None = attr.field(default=None, kw_only=True)
        assetId: str | None = attr.field(default=None, kw_only=True)
        state: str | None = attr.field(default=None, kw_only=True)
        terminalEvent: str | None = attr.field(default=None, kw_only=True)
        source: str | None = attr.field(default=None, kw_only=True)
        failureReason: str | None = attr.field(default=None, kw_only=True)
        size: int | None = attr.field(default=None, kw_only=True)
        sha256: str | None = attr.field(default=None, kw_only=True)

        @staticmethod
        def _get_schema() -> str:
            return SCHEMA_URL

    return EdcTransferRunFacet


def run_facet(facts: TransferFacts) -> Any:
    """The ``edcTransfer`` run facet of ``facts`` (with ``_producer`` :data:`PRODUCER` and ``_schemaURL``
    :data:`SCHEMA_URL`).

    :raises ImportError: the OpenLineage client is not installed.
    """
    return _facet_class()(producer=PRODUCER, **facts.run_facet_fields())


def operator_lineage(facts: TransferFacts) -> Any:
    """The OpenLineage provider's ``OperatorLineage`` of ``facts``: inputs, outputs and the run facet; ``None``
    when the OpenLineage provider is not installed."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
    except ImportError:
        return None
    return OperatorLineage(
        inputs=[Dataset(namespace=d.namespace, name=d.name) for d in facts.inputs()],
        outputs=[Dataset(namespace=d.namespace, name=d.name) for d in facts.outputs()],
        run_facets={RUN_FACET_NAME: run_facet(facts)},
    )
