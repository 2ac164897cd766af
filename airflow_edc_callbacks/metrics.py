"""Metrics through Airflow's metrics interface: StatsD or OpenTelemetry, as ``[metrics]`` configures.

Names (Airflow adds its ``statsd_prefix``/``otel_prefix``, e.g. ``airflow.``):

=========================================================  =======  =============================================
``edc_callbacks.callback.accepted``                        counter  a new event stored (any route)
``edc_callbacks.callback.duplicate``                       counter  an event stored before (EDC re-delivery, or
                                                                    dynamic and static route both)
``edc_callbacks.callback.ignored``                         counter  an event about no process on a dynamic token
                                                                    (acknowledged, not stored)
``edc_callbacks.callback.conflict``                        counter  an envelope id stored before with another
                                                                    body (409; the stored event stays)
``edc_callbacks.callback.rejected.<reason>``               counter  ``malformed`` (400), ``unauthorized`` (401),
                                                                    ``wrong_process`` (403), ``unknown_target``
                                                                    (404), ``timeout`` (408), ``too_large`` (413),
                                                                    ``not_json`` (415), ``invalid`` (422),
                                                                    ``unavailable`` (503)
``edc_callbacks.trigger.wakeup_latency``                   timer    ms from the receiver storing an event to the
                                                                    waiting trigger deciding on it
``edc_callbacks.trigger.state_check``                      counter  a trigger asked the connector (fallback)
``edc_callbacks.trigger.stall_warning``                    counter  a process stayed past stall_warning_after
``edc_callbacks.trigger.stall_timeout``                    counter  a wait ended on stall_timeout
``edc_callbacks.store.purged``                             counter  events deleted by retention
=========================================================  =======  =============================================

Airflow's triggerer sets its metrics backend up itself, and so does the api-server from Airflow 3.3 on
(3.1 reads ``[metrics]`` on import; on 3.2's api-server the first metric sets it up, see
:mod:`airflow_edc_callbacks._compat`); ``airflow-edc-callbacks serve`` does it with
:func:`initialize_from_config`. A metrics failure never fails a callback or a trigger.
"""

from __future__ import annotations

import logging
from datetime import timedelta

log = logging.getLogger(__name__)

PREFIX = "edc_callbacks"

REJECTION_REASONS = {
    400: "malformed",
    401: "unauthorized",
    403: "wrong_process",
    404: "unknown_target",
    408: "timeout",
    413: "too_large",
    415: "not_json",
    422: "invalid",
    503: "unavailable",
}
"""Receiver status codes and the name of their ``callback.rejected`` counter."""


def initialize_from_config() -> None:
    """Set the metrics backend up from ``[metrics]``, as Airflow's own server processes do."""
    try:
        from airflow_edc_callbacks import _compat  # imports Airflow: not before a metric is due

        _compat.initialize_stats_from_config()
    except Exception:
        log.warning("Metrics are not set up; none will be emitted", exc_info=True)


def incr(name: str, count: int = 1) -> None:
    """Increment the counter ``edc_callbacks.<name>``."""
    try:
        from airflow_edc_callbacks import _compat

        _compat.ensure_stats()
        _compat.stats().incr(f"{PREFIX}.{name}", count)
    except Exception:
        log.debug("Metric %s not emitted", name, exc_info=True)


def timing(name: str, milliseconds: float) -> None:
    """Record ``milliseconds`` on the timer ``edc_callbacks.<name>``."""
    try:
        from airflow_edc_callbacks import _compat

        _compat.ensure_stats()
        _compat.stats().timing(f"{PREFIX}.{name}", timedelta(milliseconds=max(0.0, milliseconds)))
    except Exception:
        log.debug("Metric %s not emitted", name, exc_info=True)


def callback_answered(status_code: int, status: str | None = None) -> None:
    """Count one receiver answer: accepted, duplicate, ignored, conflict, or rejected by reason.

    :param status_code: the HTTP status answered.
    :param status: for a 200, the answer's ``status`` (``stored``, ``duplicate`` or ``ignored``).
    """
    if status_code == 200:
        incr({"duplicate": "callback.duplicate", "ignored": "callback.ignored"}.get(status or "", "callback.accepted"))
    elif status_code == 409:
        incr("callback.conflict")
    else:
        incr(f"callback.rejected.{REJECTION_REASONS.get(status_code, f'http_{status_code}')}")
