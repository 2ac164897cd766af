"""Airflow names the tests use that moved between the supported minors (3.1, 3.2, 3.3).

The package's own differences are in :mod:`airflow_edc_callbacks._compat`; these are the test-only ones.
"""

from __future__ import annotations

from airflow_edc_callbacks._compat import AIRFLOW_V_3_2_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import TaskDeferred
else:  # Airflow 3.1
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

__all__ = ["DagBag", "TaskDeferred"]
