"""The ``[edc_callbacks]`` Airflow configuration section: option names, defaults and typed getters.

Every getter reads the configuration when called (never at import), so a value set through
``AIRFLOW__EDC_CALLBACKS__<OPTION>`` in the process environment is honoured.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

SECTION = "edc_callbacks"
DEFAULT_CONN_ID = "edc_default"
API_SERVER_PREFIX = "/edc-callbacks"
DEFAULT_FALLBACK_CHECK_INTERVAL = 300.0
DEFAULT_STALL_WARNING_AFTER = 600.0
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_PURGE_INTERVAL = timedelta(hours=1)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_AUTH_HEADER = "X-Edc-Callback-Auth"

__all__ = [
    "API_SERVER_PREFIX",
    "DEFAULT_CONN_ID",
    "SECTION",
    "airflow_home",
    "default_deferrable",
    "get_body_timeout",
    "get_callback_auth",
    "get_callback_base_url",
    "get_configured_signing_key",
    "get_fallback_check_interval",
    "get_max_body_bytes",
    "get_purge_interval",
    "get_retention",
    "get_stall_warning_after",
    "get_store_url",
    "get_worker_exit_seconds",
    "parse_duration",
]


def get_configured_signing_key() -> str | None:
    """``[edc_callbacks] callback_signing_key``, or ``None`` when unset."""
    return _conf_get("callback_signing_key")


def _conf_get(option: str) -> str | None:
    from airflow.configuration import conf

    value = conf.get(SECTION, option, fallback=None)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def airflow_home() -> Path:
    """``AIRFLOW_HOME`` as Airflow resolves it (default ``~/airflow``)."""
    from airflow.configuration import AIRFLOW_HOME

    return Path(AIRFLOW_HOME)


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (Airflow's own default: ``False``).

    The default of ``deferrable`` in every operator and sensor of this provider, read when the module
    defining them is imported (the idiom of Apache Airflow's own providers).
    """
    from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def get_store_url() -> str:
    """The SQLAlchemy URL of the event store; default a SQLite file ``edc_callbacks.db`` in ``AIRFLOW_HOME``."""
    return _conf_get("store_url") or f"sqlite:///{airflow_home() / 'edc_callbacks.db'}"


def get_callback_base_url() -> str:
    """The receiver's base URL as the connector reaches it, without a trailing slash.

    Default: ``[api] base_url`` (else ``http://localhost:8080``) + ``/edc-callbacks``, i.e. the plugin
    mounted on the api-server.
    """
    value = _conf_get("callback_base_url")
    if value:
        return value.rstrip("/")
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return f"{str(base).rstrip('/')}{API_SERVER_PREFIX}"


def get_fallback_check_interval() -> float:
    """Seconds without a callback after which a waiting trigger asks the connector for the state (default 300);
    the trigger asks again after 2x, 4x... that while the silence goes on."""
    value = _conf_get("fallback_check_interval")
    return float(value) if value else DEFAULT_FALLBACK_CHECK_INTERVAL


def get_stall_warning_after() -> float:
    """``[edc_callbacks] stall_warning_after``: seconds a waited-for process may stay in one non-terminal
    state before its trigger logs a warning naming the state and its usual cause (default 600)."""
    value = _conf_get("stall_warning_after")
    return float(value) if value else DEFAULT_STALL_WARNING_AFTER


def get_worker_exit_seconds() -> float:
    """Seconds a worker may take to report a deferral: ``[workers] min_heartbeat_interval`` (5) + 1.

    Triggers hold their event that long after the deferral: Airflow 3.3 fails a task whose trigger fires
    before the deferring worker has reported (apache/airflow#71580, #72716).
    """
    from airflow.configuration import conf

    return conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0) + 1.0


def get_retention() -> timedelta:
    """How long stored events are kept (default 7 days); see :func:`parse_duration` for the syntax."""
    value = _conf_get("retention")
    return parse_duration(value) if value else DEFAULT_RETENTION


def get_purge_interval() -> timedelta:
    """``[edc_callbacks] purge_interval``: time between the receiver's background purges (default 1 h; 0: none).

    :raises ValueError: the configured value is not a duration.
    """
    value = _conf_get("purge_interval")
    return parse_duration(value) if value else DEFAULT_PURGE_INTERVAL


def get_max_body_bytes() -> int:
    """Largest accepted callback body in bytes (default 1 MiB)."""
    value = _conf_get("max_body_size")
    return int(value) if value else DEFAULT_MAX_BODY_BYTES


def get_body_timeout() -> float:
    """``[edc_callbacks] body_timeout``: seconds a callback body may take to arrive (default 10; 0: no limit).

    :raises ValueError: the configured value is not a non-negative number.
    """
    value = _conf_get("body_timeout")
    if not value:
        return DEFAULT_BODY_TIMEOUT
    seconds = float(value)
    if not seconds >= 0:
        raise ValueError(f"[edc_callbacks] body_timeout must be a number of seconds >= 0, got {value!r}")
    return seconds


def get_callback_auth() -> tuple[str, str] | None:
    """``(header name, expected value)`` every callback must carry, or ``None`` when not configured.

    Configured by ``callback_auth_secret`` (the value the connector resolves from its vault through the
    callback's ``authCodeId``) and ``callback_auth_header`` (default ``X-Edc-Callback-Auth``; the
    callback's ``authKey``).
    """
    secret = _conf_get("callback_auth_secret")
    if not secret:
        return None
    return (_conf_get("callback_auth_header") or DEFAULT_AUTH_HEADER, secret)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or a bare number of seconds.

    :raises ValueError: the text is not such a duration or is negative.
    """
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS else "s"
    number = raw[:-1] if raw[-1:] in _UNITS else raw
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"Not a duration: {text!r} (use e.g. 30s, 15m, 12h, 7d)") from None
    if amount < 0:
        raise ValueError(f"Duration must not be negative: {text!r}")
    return timedelta(seconds=amount * _UNITS[unit])
