"""The dynamic callback address an operator hands its connector, and the task-log warning when
``[edc_callbacks] callback_base_url`` is not set (the address then falls back to Airflow's ``[api] base_url``)."""

from __future__ import annotations

from typing import Any

from airflow_edc_callbacks.config import callback_base_url_fallback
from airflow_edc_callbacks.tokens import callback_url

_WARNED = "_edc_callback_base_url_warned"
"""The operator attribute that records the warning was logged in this execution (a worker builds the
operator afresh for every execution, resumes included)."""


def task_callback_url(task: Any, correlation_id: str) -> str:
    """``<callback_base_url>/callbacks/<token>`` for ``correlation_id`` (see
    :func:`~airflow_edc_callbacks.tokens.callback_url`).

    When ``[edc_callbacks] callback_base_url`` is not set, the task log gets one warning per execution of
    ``task`` naming the URL it falls back to (``[api] base_url`` + ``/edc-callbacks``) and the option to set:
    a connector that cannot reach that URL loses every callback, which otherwise shows only as a wait of
    ``fallback_check_interval`` and a result with ``source: state_check``.
    """
    fallback = callback_base_url_fallback()
    if fallback is not None and not getattr(task, _WARNED, False):
        setattr(task, _WARNED, True)
        task.log.warning(
            "[edc_callbacks] callback_base_url is not set: the connector is told to call back %s "
            "([api] base_url + /edc-callbacks). If the connector cannot reach that URL, no callback arrives "
            "and the task waits until its state check. Set [edc_callbacks] callback_base_url "
            "(AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL) to the receiver's URL as the connector reaches it; "
            "`airflow-edc-callbacks doctor` checks it.",
            fallback,
        )
    return callback_url(correlation_id)
