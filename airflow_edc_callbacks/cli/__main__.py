"""``python -m airflow_edc_callbacks.cli``: the ``airflow-edc-callbacks`` command."""

from __future__ import annotations

from airflow_edc_callbacks.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
