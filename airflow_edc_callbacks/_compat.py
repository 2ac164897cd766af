"""Every Airflow interface that differs between the supported minors (3.1, 3.2, 3.3), behind one name each.

The rest of the package imports these names from here and nothing version-dependent from Airflow itself.
Public Airflow interfaces are used wherever the minor has one:

======================================  ===============================  ==================================
                                        Airflow 3.1                      Airflow 3.2 and 3.3
======================================  ===============================  ==================================
``AirflowSensorTimeout``,               ``airflow.exceptions``           ``airflow.sdk.exceptions``
``AirflowNotFoundException``
metrics (the core ``Stats`` object      ``airflow.stats.Stats``, set up  ``airflow.observability.stats``
the api-server and triggerer use)       from ``[metrics]`` on import     ``.Stats``, set up with
                                                                         ``Stats.initialize(factory=...)``
======================================  ===============================  ==================================

Metrics set-up per minor: 3.1 reads ``[metrics]`` when ``airflow.stats`` is first imported; 3.2's and
3.3's scheduler, triggerer and workers call ``initialize`` themselves, and so does 3.3's api-server; 3.2's
api-server does not, so the first metric of this package sets the backend up there (:func:`ensure_stats`).
The factory comes from ``airflow.observability.metrics.stats_utils.get_stats_factory``, which takes the
``Stats`` class on 3.2 and nothing on 3.3 (where ``initialize`` also takes ``export_legacy_names``).

Who may read a task instance's timeline page (:func:`require_task_instance_read`) is asked of the api-server's
FastAPI security helpers (``airflow.api_fastapi.core_api.security``), which providers have no public
interface for; ``get_user`` takes ``(request, oauth token, bearer credentials)`` on every minor, and only
3.3 wants the trust marker of its refresh middleware next to a user it finds on the request.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import airflow
from packaging.version import Version

__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "StatsEmitter",
    "airflow_conf",
    "airflow_home",
    "connection_from_secrets",
    "ensure_stats",
    "get_task_states",
    "initialize_stats_from_config",
    "require_task_instance_read",
    "stats",
]

AIRFLOW_VERSION = Version(Version(airflow.__version__).base_version)
"""The running Airflow's version without pre-release/dev suffixes (``3.2.0rc1`` counts as 3.2.0).

Each branch below is typed against the Airflow it is for; ``type: ignore`` comments silence what mypy reports
when it checks a branch against another minor's stubs (``mypy`` is clean in the venv of each minor)."""
AIRFLOW_V_3_2_PLUS = Version("3.2.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION

if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowSensorTimeout  # type: ignore[attr-defined]
else:  # Airflow 3.1: the Task SDK has neither yet (core raises airflow.exceptions.AirflowNotFoundException)
    from airflow.exceptions import (  # type: ignore[assignment,attr-defined,no-redef]
        AirflowNotFoundException,
        AirflowSensorTimeout,
    )


class StatsEmitter(Protocol):
    """The part of Airflow's ``Stats`` this package uses (the same on every minor)."""

    def incr(self, stat: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``stat``."""

    def timing(self, stat: str, dt: Any) -> None:
        """Record the duration ``dt`` (a ``timedelta``) on the timer ``stat``."""


def stats() -> StatsEmitter:
    """The ``Stats`` object of Airflow core: the one the api-server and the triggerer set up.

    :raises ImportError: when Airflow core is not installed (a process with the Task SDK only).
    """
    if AIRFLOW_V_3_2_PLUS:
        from airflow.observability.stats import Stats
    else:
        from airflow.stats import Stats  # type: ignore[assignment,no-redef]
    emitter: StatsEmitter = Stats
    return emitter


_ensured_in_pid: int | None = None
"""The process in which the metrics backend was last set up from ``[metrics]`` by this module."""


def initialize_stats_from_config() -> None:
    """Set Airflow core's metrics backend up from ``[metrics]`` (StatsD, OpenTelemetry or none), as Airflow's
    own server processes do; a second call replaces the backend with one for the current configuration.

    :raises Exception: whatever Airflow raises for a backend it cannot create (callers log it).
    """
    global _ensured_in_pid
    from airflow.configuration import conf

    if AIRFLOW_V_3_3_PLUS:
        from airflow.observability.metrics import stats_utils
        from airflow.observability.stats import Stats

        Stats.initialize(  # type: ignore[call-arg]
            factory=stats_utils.get_stats_factory(),  # type: ignore[call-arg]
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=False),
        )
    elif AIRFLOW_V_3_2_PLUS:
        from airflow.observability.metrics import stats_utils
        from airflow.observability.stats import Stats

        Stats.initialize(factory=stats_utils.get_stats_factory(Stats))  # type: ignore[call-arg]
    else:
        # Airflow 3.1 has no initialize: its Stats metaclass picks the backend from [metrics] once, when
        # airflow.stats is imported. Run that choice again on the current configuration.
        from airflow.stats import Stats  # type: ignore[assignment]

        meta = type(Stats)
        if "factory" in vars(meta):
            delattr(meta, "factory")
        type.__setattr__(Stats, "instance", None)
        meta.__init__(Stats)  # type: ignore[call-overload,misc]
    _ensured_in_pid = os.getpid()


def ensure_stats() -> None:
    """On Airflow 3.2, set the metrics backend up from ``[metrics]`` in a process that never did; elsewhere
    nothing.

    3.2's api-server never sets its ``Stats`` up (its scheduler, triggerer and workers do, and so do the
    3.1 and 3.3 api-servers), and whatever Airflow emits first there fixes the backend to "no metrics"
    (``NoStatsLogger``). A process whose backend was set up is left alone: setting an OpenTelemetry backend
    up again would start a second meter provider and restart its counters. Checked once per process.
    """
    global _ensured_in_pid
    if not AIRFLOW_V_3_2_PLUS or AIRFLOW_V_3_3_PLUS or _ensured_in_pid == os.getpid():
        return
    _ensured_in_pid = os.getpid()  # a backend that cannot be created is not retried on every metric
    from airflow.observability.stats import Stats

    factory = type.__getattribute__(Stats, "factory")
    if factory is None or getattr(factory, "__name__", "") == "NoStatsLogger":
        initialize_stats_from_config()


def airflow_conf() -> Any:
    """Airflow's configuration object (``airflow.configuration.conf``), read when called."""
    from airflow.configuration import conf

    return conf


def airflow_home() -> str:
    """``AIRFLOW_HOME`` as Airflow resolved it (``airflow.configuration.AIRFLOW_HOME``)."""
    from airflow.configuration import AIRFLOW_HOME

    return str(AIRFLOW_HOME)


def connection_from_secrets(conn_id: str) -> Any:
    """A connection by Airflow core's lookup (environment, secrets backends, then the metastore):
    ``airflow.models.connection.Connection.get_connection_from_secrets``. For server processes (the
    api-server, the standalone receiver, the CLI); tasks read connections through the Task SDK.

    :raises AirflowNotFoundException: no such connection.
    """
    from airflow.models.connection import Connection

    return Connection.get_connection_from_secrets(conn_id)


def get_task_states(*, dag_id: str, task_ids: list[str], run_ids: list[str], map_index: int) -> Any:
    """Task instance states as the API server has them, through the running process's supervisor (a
    worker's or the triggerer's): ``RuntimeTaskInstance.get_task_states``, the call Airflow's own
    ``ExternalTaskTrigger`` makes. Synchronous: call it from a thread in async code.

    :returns: ``{run_id: {task_id or task_id_<map_index>: state}}``.
    :raises Exception: no supervisor in this process, or the API server did not answer.
    """
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=task_ids, run_ids=run_ids, map_index=map_index)


async def require_task_instance_read(request: Any) -> None:
    """Let a request to the api-server through only when Airflow's auth manager knows its user and lets them
    read the task instances of the DAG named by the request's path parameter ``dag_id``.

    Airflow's own FastAPI security helpers, as the core API's task instance routes use them (the same on
    3.1, 3.2 and 3.3): ``airflow.api_fastapi.core_api.security.get_user`` (the JWT of an
    ``Authorization: Bearer`` header, else of the UI's ``_token`` cookie) and
    ``requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)``. For the api-server process only: the
    auth manager must be initialised.

    :param request: the ``starlette.requests.Request``.
    :raises fastapi.HTTPException: 401 no token or an expired one, 403 an invalid token or no read access.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
    from fastapi.security import HTTPBearer
    from starlette.concurrency import run_in_threadpool

    credentials = await HTTPBearer(auto_error=False)(request)
    user = await get_user(request, None, credentials)  # (request, oauth token, bearer) on every minor
    check = requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)
    await run_in_threadpool(check, request, user)  # reads the DAG's team from the metadata database
