"""Metrics through Airflow's metrics interface: StatsD or OpenTelemetry, as ``[metrics]`` configures.

Names (Airflow adds its ``statsd_prefix``/``otel_prefix``, e.g. ``airflow.``):

=========================================================  =======  =============================================
``edc_callbacks.callback.accepted``                        counter  a new event stored (any route)
``edc_callbacks.callback.duplicate``                       counter  an event stored before (EDC re-delivery, or
                                                                    dynamic and static route both)
``edc_callbacks.callback.rejected.<reason>``               counter  ``unauthorized`` (401), ``unknown_target``
                                                                    (404), ``too_large`` (413), ``not_json``
                                                                    (415), ``invalid`` (422), ``unavailable`` (503)
``edc_callbacks.trigger.wakeup_latency``                   timer    ms from the receiver storing an event to the
                                                                    waiting trigger deciding on it
``edc_callbacks.trigger.state_check``                      counter  a trigger asked the connector (fallback)
``edc_callbacks.store.purged``                             counter  events deleted by retention
=========================================================  =======  =============================================

The api-server and the triggerer set Airflow's metrics backend up themselves;
``airflow-edc-callbacks serve`` does it with :func:`initialize_from_config`. A metrics failure never
fails a callback or a trigger.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "REJECTION_REASONS", "incr", "initialize_from_config", "timing"]

PREFIX = "edc_callbacks"

REJECTION_REASONS = {
    401: "unauthorized",
    404: "unknown_target",
    408: "timeout",
    413: "too_large",
    415: "not_json",
    422: "invalid",
    503: "unavailable",
}
"""Receiver status codes and the name of their ``callback.rejected`` counter."""


def _stats() -> Any:
    """The Stats module the running Airflow process set up (server processes use Airflow core's copy)."""
    try:
        from airflow._shared.observability.metrics import stats

        return stats
    except ImportError:  # Airflow before 3.2, or a process with the Task SDK only
        from airflow.stats import Stats

        return Stats


def initialize_from_config() -> None:
    """Set the metrics backend up from ``[metrics]``, as Airflow's own server processes do."""
    try:
        from airflow.configuration import conf
        from airflow.observability.metrics import stats_utils

        _stats().initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=False),
        )
    except Exception:
        log.warning("Metrics are not set up; none will be emitted", exc_info=True)


def incr(name: str, count: int = 1) -> None:
    """Increment the counter ``edc_callbacks.<name>``."""
    try:
        _stats().incr(f"{PREFIX}.{name}", count)
    except Exception:
        log.debug("Metric %s not emitted", name, exc_info=True)


def timing(name: str, milliseconds: float) -> None:
    """Record ``milliseconds`` on the timer ``edc_callbacks.<name>``."""
    try:
        _stats().timing(f"{PREFIX}.{name}", timedelta(milliseconds=max(0.0, milliseconds)))
    except Exception:
        log.debug("Metric %s not emitted", name, exc_info=True)


def callback_answered(status_code: int, duplicate: bool = False) -> None:
    """Count one receiver answer: accepted, duplicate or rejected by reason."""
    if status_code == 200:
        incr("callback.duplicate" if duplicate else "callback.accepted")
    else:
        incr(f"callback.rejected.{REJECTION_REASONS.get(status_code, f'http_{status_code}')}")
