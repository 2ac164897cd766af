"""A reusable harness that runs a real ``airflow standalone`` (Airflow 3.3.x) for end-to-end tests and the demo.

Usage from Python::

    from demo.airflow_env import AirflowStandalone

    with AirflowStandalone(home=tmp / "airflow", dags_folder=tmp / "dags", port=28080) as af:
        af.wait_for_dag("my_dag")
        run_id = af.trigger_dag("my_dag", conf={"x": 1})
        assert af.wait_for_run("my_dag", run_id) == "success"
        print(af.xcom("my_dag", run_id, "my_task"))

Usage from a shell (keeps running until SIGINT / SIGTERM)::

    python -m demo.airflow_env --home /tmp/af --dags demo/dags --port 28080

Facts this module relies on (seen on Airflow 3.3.2):

* ``airflow standalone`` starts ``airflow scheduler|dag-processor|api-server|triggerer`` found on ``PATH``: the
  interpreter's ``bin`` directory (or that of ``$EDC_E2E_AIRFLOW_VENV``, see :func:`airflow_bin_dir`) is put
  first on ``PATH``.
* When the api-server port changes, ``[core] execution_api_server_url`` must follow it, or every task fails
  with "Connection refused" before it runs.
* The worker / triggerer log servers default to 8793 / 8794; they are moved next to the api port
  (``port + 1`` / ``port + 2``) so that several harnesses can run side by side.
* Standalone is started in its own session; task runners put themselves in their own process *groups*
  (but stay in the session), so :meth:`AirflowStandalone.stop` signals every process of the *session*,
  escalating SIGINT (standalone's own graceful shutdown) -> SIGTERM -> SIGKILL.
* ``[core] simple_auth_manager_all_admins=True`` makes ``GET /auth/token`` hand out a bearer token without a login
  (and, from Airflow 3.2, makes every request an admin's). With ``login=(user, password)`` the simple auth
  manager asks for a login instead: that one admin user, its password in a file the harness writes, and
  bearer tokens from ``POST /auth/token``; the UI's login page sets the ``_token`` cookie.
* ``GET .../logs/{try}`` has no text/plain variant: ``Accept: application/json`` (default) answers
  ``{"content": [{"timestamp", "event", "level", ...}, ...], "continuation_token"}``;
  ``Accept: application/x-ndjson`` streams one JSON object per line. :meth:`AirflowStandalone.task_log`
  renders the JSON form as plain text lines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx

__all__ = [
    "AIRFLOW_VENV_VARIABLE",
    "TERMINAL_RUN_STATES",
    "TERMINAL_TI_STATES",
    "AirflowRestApi",
    "AirflowStandalone",
    "airflow_bin_dir",
    "file_tail",
    "port_open",
    "stop_session",
    "tuned_airflow_env",
]

AIRFLOW_VENV_VARIABLE = "EDC_E2E_AIRFLOW_VENV"
"""Environment variable: a virtualenv with another Airflow (and this package), e.g. ``.venv-airflow-3.1.8`` from
``scripts/airflow_venv.sh``, whose ``airflow`` the harness runs instead of the one next to this interpreter."""


def airflow_bin_dir() -> Path:
    """The ``bin`` directory whose ``airflow`` (and ``airflow-edc-callbacks``) the harness runs.

    ``$EDC_E2E_AIRFLOW_VENV/bin`` when that variable is set, so the end-to-end tests (which run in this
    interpreter and talk to Airflow over HTTP) can drive another Airflow minor; else this interpreter's.

    :raises RuntimeError: the variable names a directory without ``bin/airflow``.
    """
    venv = os.environ.get(AIRFLOW_VENV_VARIABLE)
    if not venv:
        return Path(sys.executable).parent
    bin_dir = Path(venv).resolve() / "bin"
    if not (bin_dir / "airflow").is_file():
        raise RuntimeError(f"{AIRFLOW_VENV_VARIABLE}={venv} has no bin/airflow (make it with scripts/airflow_venv.sh)")
    return bin_dir


#: DAG run states after which nothing more happens.
TERMINAL_RUN_STATES: frozenset[str] = frozenset({"success", "failed"})
#: Task instance states after which the task instance does not run again by itself.
TERMINAL_TI_STATES: frozenset[str] = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

#: Components that must report ``healthy`` on ``/api/v2/monitor/health``.
HEALTH_COMPONENTS: tuple[str, ...] = ("metadatabase", "scheduler", "triggerer", "dag_processor")

#: Settings (``AIRFLOW__SECTION__KEY`` -> value) that make a local standalone react quickly.
#: Checked against ``airflow/config_templates/config.yml`` of apache-airflow-core 3.3.2.
FAST_SETTINGS: dict[str, str] = {
    # --- DAG processor: see new files quickly, re-parse changed files quickly.
    # How often a bundle (the local dags folder) is re-listed for new / deleted files (default 300 s).
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
    # How often the processor checks whether a bundle is due for a refresh (default 5 s).
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
    # How often an already known file is re-parsed (default 30 s).
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
    # Serialized DAG rows may be rewritten this often (default 30 s); matters when a test edits a DAG file.
    "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
    # Parse in one process (2 CPUs here; fewer forks, less noise).
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    # Stop printing parsing stats tables into standalone.log every 30 s.
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
    # --- Scheduler: pick up a task set back to `scheduled` by the triggerer quickly.
    # Sleep between idle scheduler loops (default 1 s); this bounds the resume latency after a trigger fires.
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    # Heartbeats (default 5 s): the first one is written at job start, lower values only make health fresher.
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    # --- Workers (task supervisor): the supervisor's select() waits up to this long (default 5 s) and, seen on
    # 3.3.2, often only notices a task process that exited after defer()/failure at the end of that wait. A stale
    # "success" for the defer-exit that arrives after the trigger already re-queued the task makes the scheduler
    # mark it FAILED ("task state changed externally", apache/airflow#66374/#72716). 1 s shrinks that window.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    # How often timed-out deferrals are checked (default 15 s); lets trigger `timeout=` tests finish sooner.
    "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
}


def tuned_airflow_env(
    home: Path,
    dags_folder: Path,
    port: int,
    extra_env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the full environment for ``airflow standalone`` (and any ``airflow`` CLI call against the same home).

    :param home: ``AIRFLOW_HOME`` (created by the caller); holds ``airflow.cfg``, ``airflow.db`` and the logs.
    :param dags_folder: ``[core] dags_folder``.
    :param port: api-server port; the execution API URL and the log server ports are derived from it.
    :param extra_env: applied last, so it can override anything here.
    :param base_env: starting environment (default: ``os.environ``).
    """
    env = dict(os.environ if base_env is None else base_env)
    # Drop inherited Airflow settings (e.g. of a developer's own Airflow) so the harness is reproducible.
    for key in list(env):
        if key.startswith("AIRFLOW__") or key in {"AIRFLOW_HOME", "AIRFLOW_CONFIG"}:
            del env[key]
    bin_dir = str(airflow_bin_dir())
    path = env.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        env["PATH"] = bin_dir + (os.pathsep + path if path else "")
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port + 1),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port + 2),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "NO_COLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(FAST_SETTINGS)
    if extra_env:
        env.update(extra_env)
    return env


# --------------------------------------------------------------------------------------------------------------
# /proc helpers (Linux): find every live process of a session so that nothing is left behind.
# --------------------------------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """Return ``(state, ppid, pgrp, session)`` of ``pid`` from ``/proc/<pid>/stat``, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3])


def _live_processes(session: int, also: Iterable[int] = ()) -> set[int]:
    """PIDs (not zombies) in ``session`` plus those of ``also`` still alive (e.g. descendants that left it)."""
    found: set[int] = set()
    wanted = set(also)
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            st = _proc_stat(pid)
            if st is None or st[0] in ("Z", "X"):
                continue
            if st[3] == session or pid in wanted:
                found.add(pid)
        return found
    # Non-Linux fallback: only the leader's process group is visible.
    try:
        os.killpg(session, 0)
        return {session}
    except OSError:
        return set()


def _descendants(root: int) -> set[int]:
    """All live descendants of ``root`` (by ppid), so processes that started a new session are not missed."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st is not None and st[0] not in ("Z", "X"):
                children.setdefault(st[1], []).append(int(entry.name))
    out: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in out:
                out.add(child)
                stack.append(child)
    return out


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def stop_session(
    sid: int,
    leader: subprocess.Popen[bytes] | None = None,
    grace_s: float = 20.0,
    first: signal.Signals = signal.SIGINT,
) -> set[int]:
    """Stop every process of session ``sid`` (and its leader's descendants that left it); return survivors.

    ``first`` goes to the leader (SIGINT: Airflow's orderly shutdown), then SIGTERM and SIGKILL to whatever
    is left of the session after ``grace_s`` seconds. ``first=SIGKILL`` kills every process of the session
    at once, as a crash of its host would.
    """
    tracked = _descendants(sid) | {sid}

    def remaining() -> set[int]:
        if leader is not None:
            leader.poll()  # reap the leader
        tracked.update(_descendants(sid))
        return _live_processes(sid, tracked)

    def wait_gone(timeout: float) -> set[int]:
        end = time.monotonic() + timeout
        left = remaining()
        while left and time.monotonic() < end:
            time.sleep(0.2)
            left = remaining()
        return left

    if first is signal.SIGKILL:
        _signal_all(remaining(), signal.SIGKILL)
        return wait_gone(5.0)
    _signal_all([sid], first)
    left = wait_gone(grace_s)
    if left:
        _signal_all(left, signal.SIGTERM)
        left = wait_gone(5.0)
    if left:
        _signal_all(left, signal.SIGKILL)
        left = wait_gone(5.0)
    return left


def file_tail(path: Path, lines: int) -> str | None:
    """The last ``lines`` lines of a log file headed by its name, or None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return f"--- tail of {path.name} ---\n" + "\n".join(text.splitlines()[-lines:])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------------------------


class AirflowRestApi:
    """Talk to a running Airflow 3 api-server's REST API (``/api/v2``) on 127.0.0.1 and wait for DAGs, runs, tasks.

    Subclasses start the Airflow processes; they override :meth:`log_tail` and :meth:`check_alive`.

    :param port: the api-server port.
    :param poll_interval: sleep between polls of all ``wait_for_*`` helpers (seconds).
    :param login: ``(username, password)`` of an Airflow user to get tokens for (``POST /auth/token``); ``None``
        for an Airflow with ``simple_auth_manager_all_admins`` (``GET /auth/token``, no login).
    """

    def __init__(self, port: int, *, poll_interval: float = 0.25, login: tuple[str, str] | None = None) -> None:
        self.port = port
        self.login = login
        self.poll_interval = poll_interval
        self.base_url = f"http://127.0.0.1:{port}"
        self._client: httpx.Client | None = None
        self._token: str | None = None
        self._lock = threading.Lock()

    def log_tail(self, lines: int = 60) -> str:
        """The end of the Airflow processes' output, added to timeout errors."""
        return ""

    def check_alive(self, what: str) -> None:
        """Raise RuntimeError if the Airflow processes died (called while waiting for ``what``)."""

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (no auth needed)."""
        r = self.client.get("/api/v2/monitor/health", timeout=5)
        r.raise_for_status()
        health: dict[str, Any] = r.json()
        return health

    @staticmethod
    def _all_healthy(health: Mapping[str, Any], since: float | None = None) -> bool:
        for comp in HEALTH_COMPONENTS:
            info = health.get(comp) or {}
            if info.get("status") != "healthy":
                return False
            if since is not None and comp != "metadatabase":
                # Jobs of a previous, SIGKILLed run on the same home may still look alive for a while.
                beat = info.get(f"latest_{comp}_heartbeat")
                if not beat or dt.datetime.fromisoformat(beat.replace("Z", "+00:00")).timestamp() < since - 1:
                    return False
        return True

    def close_client(self) -> None:
        """Close the HTTP client (a new one is made on the next request)."""
        if self._client is not None:
            self._client.close()
            self._client = None
            self._token = None

    # ------------------------------------------------------------------ HTTP

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` on ``http://127.0.0.1:<port>`` (no auth header; see :meth:`request`)."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30, trust_env=False)
        return self._client

    def token(self, refresh: bool = False) -> str:
        """A bearer token: ``POST /auth/token`` with :attr:`login`, else ``GET /auth/token`` (which works because
        of ``simple_auth_manager_all_admins``)."""
        with self._lock:
            if self._token is None or refresh:
                if self.login is None:
                    r = self.client.get("/auth/token")
                else:
                    username, password = self.login
                    r = self.client.post("/auth/token", json={"username": username, "password": password})
                r.raise_for_status()
                self._token = r.json()["access_token"]
            return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Authenticated request; ``path`` is relative to the server root (e.g. ``/api/v2/dags``).

        Retries once with a fresh token on 401, and a ``GET`` up to twice more after a time-out (an api-server
        on a loaded 2-core machine can take longer than the client's 30 s). Does not raise on HTTP errors.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Authorization"] = f"Bearer {self.token()}"
        for attempt in range(3 if method.upper() == "GET" else 1):
            try:
                r = self.client.request(method, path, headers=headers, **kwargs)
                break
            except httpx.TimeoutException:
                if attempt == 2 or method.upper() != "GET":
                    raise
        if r.status_code == 401:
            headers["Authorization"] = f"Bearer {self.token(refresh=True)}"
            r = self.client.request(method, path, headers=headers, **kwargs)
        return r

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Authenticated ``/api/v2`` call returning the decoded JSON; raises ``httpx.HTTPStatusError`` with the body."""
        r = self.request(method, "/api/v2" + path, **kwargs)
        if r.is_error:
            raise httpx.HTTPStatusError(
                f"{method} /api/v2{path} -> {r.status_code}: {r.text[:2000]}", request=r.request, response=r
            )
        return r.json() if r.content else None

    # ------------------------------------------------------------------ polling

    def _poll(
        self,
        what: str,
        probe: Callable[[], tuple[bool, Any]],
        deadline_s: float,
    ) -> Any:
        """Call ``probe`` until it returns ``(True, value)``; TimeoutError with the last value and the log tail."""
        end = time.monotonic() + deadline_s
        last: Any = None
        while True:
            try:
                done, last = probe()
                if done:
                    return last
            except httpx.TransportError as e:
                last = f"transport error: {e!r}"
            if time.monotonic() > end:
                raise TimeoutError(
                    f"timed out after {deadline_s}s waiting for {what}; last seen: {last}\n" + self.log_tail()
                )
            self.check_alive(what)
            time.sleep(self.poll_interval)

    # ------------------------------------------------------------------ DAGs and runs

    def import_errors(self) -> list[dict[str, Any]]:
        """``GET /api/v2/importErrors`` entries (``filename``, ``stack_trace``, ...)."""
        errors: list[dict[str, Any]] = self.api("GET", "/importErrors", params={"limit": 100})["import_errors"]
        return errors

    def wait_for_dag(self, dag_id: str, deadline_s: float = 60, unpause: bool = True) -> dict[str, Any]:
        """Wait until ``dag_id`` is parsed and active (``GET /api/v2/dags/{dag_id}``), then unpause it.

        On timeout the message includes the current import errors.
        """

        def probe() -> tuple[bool, Any]:
            r = self.request("GET", f"/api/v2/dags/{dag_id}")
            if r.status_code == 404:
                return False, "404 (not parsed yet)"
            r.raise_for_status()
            dag = r.json()
            return (not dag.get("is_stale", False)), dag

        try:
            dag: dict[str, Any] = self._poll(f"DAG {dag_id!r} to be visible", probe, deadline_s)
        except TimeoutError as e:
            try:
                errs = self.import_errors()
            except Exception as ee:
                errs = [{"error": repr(ee)}]
            raise TimeoutError(f"{e}\nimport errors: {json.dumps(errs, indent=1)[:4000]}") from None
        if unpause and dag.get("is_paused"):
            dag = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        return dag

    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` (``logical_date: null``); returns the ``dag_run_id``.

        The run id is chosen here (``manual__<uuid>`` unless given), so that a 5xx (``airflow standalone``'s
        SQLite metastore answers "Database error" when it stays locked under load) can be retried, up to
        three times in 30 s: a retry that finds the run created (409) takes it.
        """
        run_id = run_id or f"manual__{uuid.uuid4()}"
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}, "dag_run_id": run_id}
        path = f"/dags/{dag_id}/dagRuns"
        deadline = time.monotonic() + 30
        for attempt in range(4):
            r = self.request("POST", "/api/v2" + path, json=body)
            if r.status_code == 409 and attempt > 0:  # an earlier attempt's run was committed after all
                return run_id
            if r.status_code < 500 or attempt == 3 or time.monotonic() > deadline:
                break
            time.sleep(2.0 * (attempt + 1))  # back-off before a retry
        if r.is_error:
            raise httpx.HTTPStatusError(
                f"POST /api/v2{path} -> {r.status_code}: {r.text[:2000]}", request=r.request, response=r
            )
        run_id_: str = r.json()["dag_run_id"]
        return run_id_

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}``."""
        return cast("dict[str, Any]", self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(self, dag_id: str, run_id: str, deadline_s: float = 120) -> str:
        """Wait until the run is ``success`` or ``failed``; return that state."""

        def probe() -> tuple[bool, Any]:
            state = self.dag_run(dag_id, run_id)["state"]
            return state in TERMINAL_RUN_STATES, state

        try:
            return cast("str", self._poll(f"run {dag_id}/{run_id} to finish", probe, deadline_s))
        except TimeoutError as e:
            raise TimeoutError(f"{e}\ntask instances: {self._ti_summary(dag_id, run_id)}") from None

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """``GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances`` (``task_id``, ``state``, ``try_number``...)."""
        tis: list[dict[str, Any]] = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        )["task_instances"]
        return tis

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task instance (``GET .../taskInstances/{task_id}`` or ``.../{task_id}/{map_index}``)."""
        suffix = f"/{map_index}" if map_index >= 0 else ""
        ti: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}")
        return ti

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance (``GET .../taskInstances/{task_id}/tries``), oldest first."""
        tries: list[dict[str, Any]] = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")[
            "task_instances"
        ]
        return tries

    task_instance_history = task_tries

    def _ti_summary(self, dag_id: str, run_id: str) -> str:
        try:
            return ", ".join(f"{t['task_id']}={t['state']}" for t in self.task_instances(dag_id, run_id))
        except Exception as e:
            return repr(e)

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: set[str] | frozenset[str],
        deadline_s: float = 60,
        map_index: int = -1,
    ) -> str:
        """Wait until the task instance is in one of ``states`` (e.g. ``{"deferred"}``); return the state.

        Fails fast (RuntimeError) if the task reaches a terminal state not in ``states``.
        """
        wanted = set(states)

        def probe() -> tuple[bool, Any]:
            r = self.request(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                + (f"/{map_index}" if map_index >= 0 else ""),
            )
            if r.status_code == 404:
                return False, "404 (no task instance yet)"
            r.raise_for_status()
            state = r.json()["state"]
            if state not in wanted and state in TERMINAL_TI_STATES:
                raise RuntimeError(
                    f"task {dag_id}/{run_id}/{task_id} ended {state!r} while waiting for {sorted(wanted)}"
                )
            return state in wanted, state

        return cast("str", self._poll(f"task {dag_id}/{run_id}/{task_id} to be in {sorted(wanted)}", probe, deadline_s))

    # ------------------------------------------------------------------ logs and XCom

    def task_log_entries(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[Any]:
        """Structured log of one try: ``GET .../taskInstances/{task_id}/logs/{try_number}?full_content=true``.

        Returns the ``content`` list: dicts with ``timestamp``, ``event``, ``level``, ``logger`` and extra keys
        (or plain strings, for sources that are not structured).
        """
        content: list[Any] = self.api(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )["content"]
        return content

    def task_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int = 1,
        map_index: int = -1,
        verbose: bool = False,
    ) -> str:
        """Plain text of one try's log: one line per entry, ``timestamp [level] logger: event key=value ...``.

        The log of a deferred task also holds the triggerer's lines (from ``attempt=N.log.trigger.*.log``).
        Tracebacks (``error_detail``) are rendered as ``exc_type: exc_value`` plus frames. Unless ``verbose``,
        the per-line context keys (``dag_id``, ``run_id``, ``task_id``, ``ti_id``, ``filename``...) are left out.
        """
        return "\n".join(
            _render_log_entry(e, verbose) for e in self.task_log_entries(dag_id, run_id, task_id, try_number, map_index)
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """Value of one XCom (``GET .../taskInstances/{task_id}/xcomEntries/{key}``) as JSON-decoded Python.

        Raises ``KeyError`` if there is no such XCom.
        """
        r = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index},
        )
        if r.status_code == 404:
            raise KeyError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}: {r.text}")
        r.raise_for_status()
        value = r.json()["value"]
        # Values are stored as JSON; older rows / some paths hand back the JSON *text*.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


class AirflowStandalone(AirflowRestApi):
    """Run ``airflow standalone`` in its own session and talk to its REST API (``/api/v2``) on 127.0.0.1.

    :param home: ``AIRFLOW_HOME``; created if missing. ``standalone.log`` (all component output) and
        ``standalone.pid`` are written there.
    :param dags_folder: the DAG folder; created if missing.
    :param port: api-server port. ``port + 1`` and ``port + 2`` are used for the worker / triggerer log servers.
        Do not use 8793 / 8794 / 8974.
    :param extra_env: environment overrides (e.g. ``AIRFLOW__CORE__PLUGINS_FOLDER`` or provider settings),
        applied after the harness's own settings.
    :param reuse: if True and ``home/standalone.pid`` names a live standalone on the same port whose health
        endpoint answers, :meth:`start` attaches to it instead of starting another one. An attached instance is
        left running by :meth:`stop` unless ``stop(force=True)``.
    :param poll_interval: sleep between polls of all ``wait_for_*`` helpers.
    :param login: ``(username, password)``: the simple auth manager asks for a login (no
        ``simple_auth_manager_all_admins``), with this one admin user; ``None``: everyone is admin, no login.
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        port: int = 28080,
        extra_env: dict[str, str] | None = None,
        *,
        reuse: bool = False,
        poll_interval: float = 0.25,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        super().__init__(port, poll_interval=poll_interval, login=login)
        self.extra_env = dict(extra_env or {})
        self.passwords_path = self.home / "simple_auth_manager_passwords.json"
        if login is not None:
            self.extra_env.update(
                {
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{login[0]}:admin",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_path),
                }
            )
        self.reuse = reuse
        self.log_path = self.home / "standalone.log"
        self.pid_path = self.home / "standalone.pid"
        self.env = tuned_airflow_env(self.home, self.dags_folder, port, self.extra_env)
        self.pid: int | None = None
        self.owned = False
        self.started_at: float | None = None  # time.time() when start() began
        self.healthy_after_s: float | None = None  # seconds from start() to all components healthy
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowStandalone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ui_url(self) -> str:
        """URL of the web UI / REST API root."""
        return f"http://127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        """True while the standalone leader process is alive (not a zombie)."""
        if self.pid is None:
            return False
        if self._proc is not None:
            return self._proc.poll() is None
        st = _proc_stat(self.pid)
        return st is not None and st[0] not in ("Z", "X")

    def start(self, deadline_s: float = 240) -> AirflowStandalone:
        """Start ``airflow standalone`` (or attach, see ``reuse``) and wait until all components are healthy.

        :raises RuntimeError: if the port is taken by something else or standalone exits early.
        :raises TimeoutError: if health is not reached within ``deadline_s`` (the process is then stopped).
        """
        if self.is_running():
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        if self.login is not None:  # the simple auth manager keeps a password it finds in its file
            self.passwords_path.touch(mode=0o600)
            self.passwords_path.write_text(json.dumps({self.login[0]: self.login[1]}) + "\n")
        self.started_at = time.time()
        t0 = time.monotonic()

        if self.reuse and self._try_attach():
            self.healthy_after_s = time.monotonic() - t0
            return self
        for p in (self.port, self.port + 1, self.port + 2):
            if port_open(p):
                raise RuntimeError(
                    f"port {p} on 127.0.0.1 is already in use; cannot start airflow standalone on port {self.port}"
                )

        self._log_file = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 (kept open for the child)
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        self._log_file.write(
            f"\n===== airflow_env: starting standalone on port {self.port} at {stamp} =====\n".encode()
        )
        self._proc = subprocess.Popen(
            [str(airflow_bin_dir() / "airflow"), "standalone"],
            cwd=str(self.home),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._proc.pid
        self.owned = True
        self.pid_path.write_text(json.dumps({"pid": self.pid, "port": self.port, "home": str(self.home)}))
        try:
            self._wait_healthy(t0 + deadline_s, since=self.started_at)
        except BaseException:
            self.stop()
            raise
        self.healthy_after_s = time.monotonic() - t0
        return self

    def _try_attach(self) -> bool:
        try:
            info = json.loads(self.pid_path.read_text())
        except (OSError, ValueError):
            return False
        pid = int(info.get("pid", 0))
        st = _proc_stat(pid) if pid else None
        if st is None or st[0] in ("Z", "X") or info.get("port") != self.port or info.get("home") != str(self.home):
            return False
        try:
            health = self.health()
        except httpx.HTTPError:
            return False
        if not self._all_healthy(health):
            return False
        self.pid = pid
        self.owned = False
        return True

    def _wait_healthy(self, deadline: float, since: float) -> None:
        last: Any = "no answer yet"
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"airflow standalone exited with code {self._proc.returncode} before becoming healthy\n"
                    + self.log_tail()
                )
            try:
                last = self.health()
                if self._all_healthy(last, since=since):
                    return
            except (httpx.HTTPError, ValueError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow standalone not healthy in time; last health: {last}\n" + self.log_tail())
            time.sleep(0.5)

    def stop(self, grace_s: float = 20.0, *, force: bool = False) -> None:
        """Stop standalone and every process of its session; never leaves processes behind.

        SIGINT to the standalone leader (its own orderly shutdown of the four components), then SIGTERM and
        finally SIGKILL to every remaining process of the session (task runners live in their own process
        groups, hence session-wide) and to descendants that may have left the session.
        An attached (``reuse``) instance is only stopped with ``force=True``.
        """
        self.close_client()
        if self.pid is None or (not self.owned and not force):
            return
        sid = self.pid
        left = stop_session(sid, self._proc, grace_s)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if left:
            raise RuntimeError(f"processes survived SIGKILL: {sorted(left)}")
        try:
            if json.loads(self.pid_path.read_text()).get("pid") == sid:
                self.pid_path.unlink()
        except (OSError, ValueError):
            pass
        self.pid = None
        self._proc = None

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of ``home/standalone.log``."""
        return file_tail(self.log_path, lines) or "(no standalone.log)"

    def check_alive(self, what: str) -> None:
        if self.owned and not self.is_running():
            raise RuntimeError(f"airflow standalone died while waiting for {what}\n" + self.log_tail())


_CONTEXT_KEYS = frozenset(
    {"dag_id", "run_id", "task_id", "ti_id", "map_index", "try_number", "filename", "lineno", "loc", "sources"}
)


def _render_log_entry(entry: Any, verbose: bool = False) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    e = dict(entry)
    if not verbose:
        for k in _CONTEXT_KEYS:
            e.pop(k, None)
    ts = e.pop("timestamp", None)
    level = e.pop("level", None)
    logger = e.pop("logger", None)
    event = e.pop("event", "")
    details = e.pop("error_detail", None)
    if not e.get("sources"):
        e.pop("sources", None)
    parts = []
    if ts:
        parts.append(str(ts))
    if level:
        parts.append(f"[{level}]")
    if logger:
        parts.append(f"{logger}:")
    parts.append(str(event))
    parts.extend(f"{k}={v}" for k, v in e.items())
    line = " ".join(parts)
    if details:
        for exc in details if isinstance(details, list) else [details]:
            if isinstance(exc, dict):
                line += f"\n  {exc.get('exc_type')}: {exc.get('exc_value')}"
                for fr in exc.get("frames") or []:
                    line += f"\n    File {fr.get('filename')}, line {fr.get('lineno')}, in {fr.get('name')}"
            else:
                line += f"\n  {exc}"
    return line


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m demo.airflow_env --home H --dags D [--port P]``: start, wait healthy, run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="AIRFLOW_HOME")
    parser.add_argument("--dags", type=Path, required=True, help="DAGs folder")
    parser.add_argument("--port", type=int, default=28080, help="api-server port (default 28080)")
    parser.add_argument("--deadline", type=float, default=240, help="seconds to wait for health")
    parser.add_argument("--reuse", action="store_true", help="attach to a running instance of the same home/port")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment (repeatable)"
    )
    args = parser.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.env)

    stop_event = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    af = AirflowStandalone(args.home, args.dags, args.port, extra, reuse=args.reuse)
    try:
        af.start(deadline_s=args.deadline)
        print(
            f"airflow standalone healthy after {af.healthy_after_s:.1f}s: UI/API {af.ui_url} "
            f"(token: GET {af.ui_url}/auth/token), pid {af.pid}, log {af.log_path}. Ctrl-C to stop.",
            flush=True,
        )
        while not stop_event.wait(1.0):
            if af.owned and not af.is_running():
                print("airflow standalone exited unexpectedly\n" + af.log_tail(), file=sys.stderr)
                return 1
    finally:
        print("stopping airflow standalone ...", flush=True)
        af.stop()
        print("stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
