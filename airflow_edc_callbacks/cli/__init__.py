"""The ``airflow-edc-callbacks`` command: serve the receiver, inspect and purge stored events, make URLs,
terminate a transfer or negotiation, check the set-up.

Results go to standard output, everything else (Airflow's and Alembic's log lines, notes, errors) to
standard error, so ``airflow-edc-callbacks events --json | python -m json.tool`` works.

Modules: :mod:`.main` (parser, entry point), one per subcommand group: :mod:`.serve`, :mod:`.store`
(``events``, ``purge``), :mod:`.callbacks` (``callback-url``, ``static-config``), :mod:`.connector`
(``terminate``), :mod:`.doctor` (``doctor``, its checks in :mod:`.checks` and :mod:`.edc_check`);
:mod:`._common` what they share.
"""

from __future__ import annotations

from airflow_edc_callbacks.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
