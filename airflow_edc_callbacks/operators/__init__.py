"""Operators of the EDC provider."""

from __future__ import annotations

from airflow_edc_callbacks.operators.negotiation import EdcContractNegotiationOperator
from airflow_edc_callbacks.operators.pipeline import EdcNegotiatedTransferOperator
from airflow_edc_callbacks.operators.pull import EdcPullDataOperator
from airflow_edc_callbacks.operators.transfer import EdcTransferOperator

__all__ = [
    "EdcContractNegotiationOperator",
    "EdcNegotiatedTransferOperator",
    "EdcPullDataOperator",
    "EdcTransferOperator",
]
