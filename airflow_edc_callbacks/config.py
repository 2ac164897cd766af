"""The ``[edc_callbacks]`` Airflow configuration section: option names, defaults and typed getters.

Every getter reads the configuration when called (never at import), so a value set through
``AIRFLOW__EDC_CALLBACKS__<OPTION>`` in the process environment is honoured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

SECTION = "edc_callbacks"
DEFAULT_CONN_ID = "edc_default"
API_SERVER_PREFIX = "/edc-callbacks"


@dataclass(frozen=True)
class ConfigOption:
    """One option of the ``[edc_callbacks]`` section, as the provider info declares it to Airflow.

    :param description: the text ``airflow config list`` and the documentation show.
    :param type: Airflow's option type (``string``, ``float``, ``integer``).
    :param default: the default as Airflow's configuration holds it (a string), or ``None`` (unset).
    :param example: an example value, or ``None``.
    :param sensitive: Airflow masks the value (``airflow config list``, the UI).
    """

    description: str
    type: str
    default: str | None
    example: str | None = None
    sensitive: bool = False


OPTIONS: dict[str, ConfigOption] = {
    "store_url": ConfigOption(
        "SQLAlchemy URL of the callback event store. Default: a SQLite file edc_callbacks.db in "
        "AIRFLOW_HOME (one machine). Use PostgreSQL when the api-server and triggerers run on several "
        "hosts: postgresql+psycopg:// (the [postgres] extra); no other driver is accepted.",
        "string",
        None,
        "postgresql+psycopg://airflow:***@postgres/edc_callbacks",
        sensitive=True,
    ),
    "callback_base_url": ConfigOption(
        "Base URL of the receiver as the EDC connector reaches it (without /callbacks). "
        "Default: [api] base_url + /edc-callbacks.",
        "string",
        None,
        "http://airflow-apiserver:8080/edc-callbacks",
    ),
    "callback_signing_key": ConfigOption(
        "Key that signs callback tokens. When unset, a key is generated once in AIRFLOW_HOME; "
        "set it when the api-server, workers and triggerers run on several hosts.",
        "string",
        None,
        sensitive=True,
    ),
    "callback_auth_header": ConfigOption(
        "Header every callback must carry when callback_auth_secret is set (the callback's authKey).",
        "string",
        "X-Edc-Callback-Auth",
    ),
    "callback_auth_secret": ConfigOption(
        "Expected value of callback_auth_header; store the same value in the connector's vault "
        "under the connection's callback_auth_code_id. Unset: no header check.",
        "string",
        None,
        sensitive=True,
    ),
    "fallback_check_interval": ConfigOption(
        "Seconds without a callback after which a waiting trigger asks the connector for the state "
        "(EDC does not re-deliver lost callbacks); while silence goes on it asks again after 2x, 4x... "
        "that (at most 1 h).",
        "float",
        "300",
    ),
    "defer_after": ConfigOption(
        "Seconds an operator waits for its transfer or negotiation in the worker, after starting it, "
        "before it defers: a process that ends within them completes the task without a deferral "
        "(no triggerer round trip, no second worker start), at the cost of a worker slot for that long. "
        "0 defers at once. The default equals Airflow's [workers] min_heartbeat_interval: a deferred "
        "task cannot resume sooner than that anyway. Operators take it as their defer_after argument.",
        "float",
        "5",
    ),
    "stall_warning_after": ConfigOption(
        "Seconds a waited-for transfer or negotiation may stay in the same non-terminal state "
        "before the task log gets one warning naming the state and its usual cause.",
        "float",
        "600",
    ),
    "stall_timeout": ConfigOption(
        "Seconds a waited-for transfer or negotiation may stay in the same non-terminal state (SUSPENDED "
        "excepted) before the wait gives up like at the task's timeout: one state check first (a callback "
        "may have been lost), then the operator terminates the process (terminate_on_timeout) and the task "
        "fails with EdcTransferTimeout or EdcNegotiationTimeout naming the state; a retry starts a new "
        "process. For a counter-party that stops without a word (a provider data plane that never ends a "
        "PUSH). 0 (the default): never; set it above the longest time a transfer of yours stays STARTED.",
        "float",
        "0",
    ),
    "retention": ConfigOption(
        "How long stored callback events are kept (e.g. 7d, 12h); the events of waiting triggers are kept longer.",
        "string",
        "7d",
    ),
    "purge_interval": ConfigOption(
        "Time between two purges of events older than retention, run by every receiver "
        "in the background (e.g. 1h; 0 disables them; airflow-edc-callbacks purge runs one).",
        "string",
        "1h",
    ),
    "max_body_size": ConfigOption("Largest accepted callback body, in bytes.", "integer", "1048576"),
    "body_timeout": ConfigOption(
        "Seconds a callback body may take to arrive once its headers are in; a slower one is "
        "answered 408 (0: no limit).",
        "float",
        "10",
    ),
}
"""Every option of ``[edc_callbacks]``: the one place their defaults are written. The provider info
(:mod:`airflow_edc_callbacks.get_provider_info`) declares them to Airflow from this table."""


def _default(option: str) -> str:
    default = OPTIONS[option].default
    if default is None:
        raise KeyError(f"[{SECTION}] {option} has no default")
    return default


DEFAULT_AUTH_HEADER = _default("callback_auth_header")


def get_configured_signing_key() -> str | None:
    """``[edc_callbacks] callback_signing_key``, or ``None`` when unset."""
    return _conf_get("callback_signing_key")


def _conf_get(option: str) -> str | None:
    from airflow_edc_callbacks import _compat

    value = _compat.airflow_conf().get(SECTION, option, fallback=None)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def airflow_home() -> Path:
    """``AIRFLOW_HOME`` as Airflow resolves it (default ``~/airflow``)."""
    from airflow_edc_callbacks import _compat

    return Path(_compat.airflow_home())


def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable`` (Airflow's own default: ``False``).

    The default of ``deferrable`` in every operator and sensor of this provider, read when the module
    defining them is imported (the idiom of Apache Airflow's own providers).
    """
    from airflow_edc_callbacks import _compat

    return bool(_compat.airflow_conf().getboolean("operators", "default_deferrable", fallback=False))


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
    return _api_server_callback_url()


def callback_base_url_fallback() -> str | None:
    """The URL :func:`get_callback_base_url` falls back to when ``[edc_callbacks] callback_base_url`` is
    not set (``[api] base_url`` + ``/edc-callbacks``), or ``None`` when it is set.

    The likeliest first misconfiguration: Airflow's default ``[api] base_url`` is ``http://localhost:8080``,
    which a connector on another host (or in a container) cannot reach, and lost callbacks show only as
    a wait of ``fallback_check_interval`` and then ``source: state_check``.
    """
    if _conf_get("callback_base_url"):
        return None
    return _api_server_callback_url()


def _api_server_callback_url() -> str:
    from airflow_edc_callbacks import _compat

    base = _compat.airflow_conf().get("api", "base_url", fallback=None) or "http://localhost:8080"
    return f"{str(base).rstrip('/')}{API_SERVER_PREFIX}"


def get_fallback_check_interval() -> float:
    """Seconds without a callback after which a waiting trigger asks the connector for the state (default 300);
    the trigger asks again after 2x, 4x... that while the silence goes on."""
    value = _conf_get("fallback_check_interval")
    return float(value or _default("fallback_check_interval"))


def get_defer_after() -> float:
    """``[edc_callbacks] defer_after``: seconds a deferrable operator waits in the worker before it defers
    (default 5; 0: defer at once).

    :raises ValueError: the configured value is not a number of seconds >= 0.
    """
    value = _conf_get("defer_after") or _default("defer_after")
    return non_negative_seconds("[edc_callbacks] defer_after", value)


def non_negative_seconds(name: str, value: float | str) -> float:
    """``value`` as seconds >= 0 (a number, or its text).

    :raises ValueError: not a finite number >= 0.
    """
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return seconds


def get_stall_warning_after() -> float:
    """``[edc_callbacks] stall_warning_after``: seconds a waited-for process may stay in one non-terminal
    state before its trigger logs a warning naming the state and its usual cause (default 600)."""
    value = _conf_get("stall_warning_after")
    return float(value or _default("stall_warning_after"))


def get_stall_timeout() -> float:
    """``[edc_callbacks] stall_timeout``: seconds a waited-for process may stay in one non-terminal state
    (``SUSPENDED`` excepted) before its wait ends as a time-out; 0 (the default): never.

    :raises ValueError: the configured value is not a number of seconds >= 0.
    """
    value = _conf_get("stall_timeout") or _default("stall_timeout")
    return non_negative_seconds("[edc_callbacks] stall_timeout", value)


def get_worker_exit_seconds() -> float:
    """Seconds a worker may take to report a deferral: ``[workers] min_heartbeat_interval`` (5) + 1.

    Triggers hold their event that long after the deferral: Airflow 3.3 fails a task whose trigger fires
    before the deferring worker has reported (apache/airflow#71580, #72716).
    """
    from airflow_edc_callbacks import _compat

    return float(_compat.airflow_conf().getfloat("workers", "min_heartbeat_interval", fallback=5.0)) + 1.0


def get_retention() -> timedelta:
    """How long stored events are kept (default 7 days); see :func:`parse_duration` for the syntax."""
    value = _conf_get("retention")
    return parse_duration(value or _default("retention"))


def get_purge_interval() -> timedelta:
    """``[edc_callbacks] purge_interval``: time between the receiver's background purges (default 1 h; 0: none).

    :raises ValueError: the configured value is not a duration.
    """
    value = _conf_get("purge_interval")
    return parse_duration(value or _default("purge_interval"))


def get_max_body_bytes() -> int:
    """Largest accepted callback body in bytes (default 1 MiB)."""
    value = _conf_get("max_body_size")
    return int(value or _default("max_body_size"))


def get_body_timeout() -> float:
    """``[edc_callbacks] body_timeout``: seconds a callback body may take to arrive (default 10; 0: no limit).

    :raises ValueError: the configured value is not a non-negative number.
    """
    value = _conf_get("body_timeout") or _default("body_timeout")
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
