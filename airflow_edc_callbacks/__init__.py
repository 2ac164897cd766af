"""airflow-edc-callbacks: run EDC transfers from Airflow and resume tasks on the connector's callbacks.

Public names are importable from their modules, e.g.
``from airflow_edc_callbacks.operators import EdcTransferOperator``. This module imports nothing from
Airflow, so ``airflow providers list`` and the plugin loader stay cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
