"""Airflow 3.3 as a production deployment runs it, on one machine: each component its own process.

``airflow standalone`` runs one of each component on SQLite. :class:`AirflowCluster` runs what the official
docker-compose runs, as native processes against one database (PostgreSQL): ``airflow db migrate``, then
N api-servers (each a receiver of callbacks), the scheduler (LocalExecutor), the dag-processor and M
triggerers. Each component runs in a session of its own, so one can be killed like a crashed pod
(:meth:`AirflowCluster.kill`) while the others keep running.

Facts this module relies on (seen on Airflow 3.3.2):

* Every api-server must sign and accept the same JWTs (``[api_auth] jwt_secret``) and session cookies
  (``[api] secret_key``); task runners use ``[core] execution_api_server_url`` (the first api-server).
* Each triggerer serves its logs on ``[logging] trigger_log_server_port``: one port per triggerer.
* ``GET /api/v2/jobs?job_type=TriggererJob`` lists triggerer jobs; a triggerer whose heartbeat is older
  than ``[triggerer] triggerer_health_check_threshold`` seconds loses its triggers to the live ones.
* SQLAlchemy's ``postgresql+psycopg`` URL serves Airflow's synchronous engine and its asynchronous one
  (``[database] sql_alchemy_conn_async``), so psycopg 3 is the only PostgreSQL driver needed.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from demo.airflow_env import AirflowRestApi, airflow_bin_dir, file_tail, port_open, stop_session, tuned_airflow_env

__all__ = ["AirflowCluster", "Component"]


@dataclass
class Component:
    """One Airflow component process (``airflow <argv...>``), in a session of its own, and its log file.

    ``job_id`` is the component's Airflow job (set for triggerers); ``killed`` marks a deliberate crash.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    killed: bool = False
    job_id: int | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, cwd: Path) -> None:
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 (kept open for the child)
        self.proc = subprocess.Popen(
            [str(airflow_bin_dir() / "airflow"), *self.argv],
            cwd=str(cwd),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        """True while the component's main process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, first: signal.Signals = signal.SIGINT, grace_s: float = 20.0) -> set[int]:
        """Stop the component's whole session; return pids that survived SIGKILL (normally none)."""
        left: set[int] = set()
        if self.proc is not None and self.proc.returncode is None:  # stopped once: its pid may be reused
            left = stop_session(self.proc.pid, self.proc, grace_s, first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return left

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the component's log, headed by its file name."""
        return file_tail(self.log_path, lines) or f"--- {self.name}: no log ---"


class AirflowCluster(AirflowRestApi):
    """Airflow's components as separate processes on one database; the REST helpers talk to the first api-server.

    :param home: ``AIRFLOW_HOME`` (created); each component logs to ``home/<component>.log``.
    :param dags_folder: the DAG folder.
    :param database_url: Airflow's metadata database, a SQLAlchemy URL (``postgresql+psycopg://...``).
    :param api_ports: one api-server per port; the first one serves the execution API and :attr:`base_url`.
    :param triggerers: how many triggerer processes.
    :param triggerer_capacity: ``--capacity`` of each triggerer (``None``: Airflow's default, 1000).
    :param log_port_base: first of ``1 + triggerers`` consecutive ports for the worker and triggerer log
        servers; they must not overlap ``api_ports``.
    :param extra_env: applied last (``AIRFLOW_CONN_*``, ``AIRFLOW__EDC_CALLBACKS__*``...).
    """

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        database_url: str,
        api_ports: Sequence[int] = (28180, 28181),
        triggerers: int = 2,
        *,
        triggerer_capacity: int | None = None,
        log_port_base: int = 28182,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        log_ports = range(log_port_base, log_port_base + 1 + triggerers)
        if set(api_ports) & set(log_ports):
            raise ValueError(f"api ports {list(api_ports)} overlap the log server ports {list(log_ports)}")
        super().__init__(api_ports[0])
        self.home = Path(home).resolve()
        self.dags_folder = Path(dags_folder).resolve()
        self.api_ports = list(api_ports)
        self.env = tuned_airflow_env(self.home, self.dags_folder, api_ports[0], extra_env)
        self.env.update(
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": database_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": "airflow-cluster-jwt-secret",
                "AIRFLOW__API__SECRET_KEY": "airflow-cluster-secret-key",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port_base),
                # a crashed triggerer's triggers move to a live one after this many seconds without a heartbeat
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            }
        )
        self.env.update(extra_env or {})
        self.ports = [*self.api_ports, *log_ports]
        self.components: dict[str, Component] = {}
        for i, port in enumerate(self.api_ports, 1):
            env = {**self.env, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
            self._add(f"api-server-{i}", ["api-server", "--port", str(port), "--workers", "1"], env)
        self._add("scheduler", ["scheduler"], self.env)
        self._add("dag-processor", ["dag-processor"], self.env)
        capacity = [] if triggerer_capacity is None else ["--capacity", str(triggerer_capacity)]
        for i in range(1, triggerers + 1):
            env = {**self.env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_port_base + i)}
            self._add(f"triggerer-{i}", ["triggerer", *capacity], env)

    def _add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.components[name] = Component(name, argv, env, self.home / f"{name}.log")

    @property
    def triggerers(self) -> list[Component]:
        """The triggerer components, in start order."""
        return [c for name, c in self.components.items() if name.startswith("triggerer-")]

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> AirflowCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, deadline_s: float = 240) -> AirflowCluster:
        """``airflow db migrate``, then every component; wait until all are healthy and each triggerer has a job.

        Triggerers start one at a time so that :attr:`Component.job_id` maps each process to its job.

        :raises RuntimeError: a port is taken, a component exits while starting, or the migration fails.
        :raises TimeoutError: not healthy within ``deadline_s`` seconds (everything is stopped then).
        """
        taken = [port for port in self.ports if port_open(port)]
        if taken:
            raise RuntimeError(f"ports {taken} on 127.0.0.1 are in use; cannot start the Airflow components")
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        end = time.monotonic() + deadline_s
        done = subprocess.run(
            [str(airflow_bin_dir() / "airflow"), "db", "migrate"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=deadline_s,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({done.returncode}):\n{done.stderr[-3000:]}")
        since = time.time()
        try:
            for component in self.components.values():
                if not component.name.startswith("triggerer-"):
                    component.start(self.home)
            for port in self.api_ports:
                api_server_up = functools.partial(self._api_server_up, port)
                self._poll(f"api-server on {port}", api_server_up, end - time.monotonic())
            for component in self.triggerers:
                known = {job["id"] for job in self.triggerer_jobs()}
                component.start(self.home)
                new_jobs = functools.partial(self._new_triggerer_jobs, known)
                jobs = self._poll(f"{component.name}'s job", new_jobs, end - time.monotonic())
                component.job_id = int(jobs[0]["id"])
            self._poll("all components healthy", functools.partial(self._healthy, since), end - time.monotonic())
        except BaseException as err:
            try:
                self.stop()
            except RuntimeError as stop_err:  # keep the start-up error in front
                print(f"stopping the Airflow components after {err!r} failed: {stop_err}", file=sys.stderr)
            raise
        return self

    def _api_server_up(self, port: int) -> tuple[bool, str]:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/v2/version", timeout=5, trust_env=False)
        except httpx.HTTPError as err:
            return False, repr(err)
        return response.is_success, f"HTTP {response.status_code}"

    def _new_triggerer_jobs(self, known: set[int]) -> tuple[bool, list[dict[str, Any]]]:
        jobs = [job for job in self.triggerer_jobs() if job["id"] not in known]
        return bool(jobs), jobs

    def _healthy(self, since: float) -> tuple[bool, Any]:
        try:
            health = self.health()
        except (httpx.HTTPError, ValueError) as err:  # not up yet, or not answering JSON yet
            return False, repr(err)
        return self._all_healthy(health, since=since), health

    def triggerer_jobs(self, alive_only: bool = True) -> list[dict[str, Any]]:
        """Triggerer jobs (``GET /api/v2/jobs?job_type=TriggererJob``): ``id``, ``hostname``, ``latest_heartbeat``..."""
        params: dict[str, Any] = {"job_type": "TriggererJob", "limit": 100}
        if alive_only:
            params["is_alive"] = "true"
        jobs: list[dict[str, Any]] = self.api("GET", "/jobs", params=params)["jobs"]
        return jobs

    def kill(self, name: str) -> None:
        """SIGKILL a component and every process of its session at once, as a crash would."""
        component = self.components[name]
        component.killed = True
        left = component.stop(first=signal.SIGKILL)
        if left:
            raise RuntimeError(f"processes of {name} survived SIGKILL: {sorted(left)}")

    def stop(self) -> None:
        """Stop every component (SIGINT, then SIGTERM / SIGKILL to what is left of each session)."""
        self.close_client()
        order = ["scheduler", *[c.name for c in self.triggerers], "dag-processor"]
        order += [n for n in self.components if n not in order]
        survivors = {name: self.components[name].stop() for name in order}
        left = {name: pids for name, pids in survivors.items() if pids}
        if left:
            raise RuntimeError(f"processes survived SIGKILL: {left}")

    def check_alive(self, what: str) -> None:
        """Raise RuntimeError naming the first component (not deliberately killed) that exited."""
        for component in self.components.values():
            if component.proc is not None and not component.killed and not component.running():
                raise RuntimeError(
                    f"{component.name} exited ({component.proc.returncode}) while waiting for {what}\n"
                    + component.log_tail(40)
                )

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of every started component's log."""
        return "\n".join(c.log_tail(lines) for c in self.components.values() if c.proc is not None)
