"""Shared fixtures. AIRFLOW_HOME points at a fresh directory before Airflow is imported."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

_HOME = Path(tempfile.mkdtemp(prefix="edc-callbacks-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

import pytest  # noqa: E402

from airflow_edc_callbacks.store import EventStore  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

SIGNING_KEY = b"test-signing-key-0123456789"


_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""The name of this pytest-xdist worker (``gw0``, ``gw1``), or ``None`` in a controller or a session without xdist."""


def _worker_index() -> int:
    """0, or the number of this pytest-xdist worker (``gw1`` -> 1): each worker's PostgreSQL has a port of its own."""
    number = (_XDIST_WORKER or "gw0")[2:]
    return int(number) if number.isdigit() else 0


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server (Debian's package, a throwaway cluster) for the session."""
    server = PostgresServer(int(os.environ.get("EDC_TEST_PG_PORT", "25432")) + _worker_index()).start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """Put a migrated Airflow metastore (SQLite, ``airflow db migrate`` of this venv's Airflow) into an
    ``AIRFLOW_HOME``: ``migrated_airflow_db(home)`` copies ``airflow.db`` there, with the ``airflow.cfg`` the
    migration wrote (its paths moved to ``home``; its Fernet key, which every process of the home must
    share to read the connections another one wrote), and returns ``home``.

    The migration runs once per session, each test gets a copy of its own.
    """
    template = tmp_path_factory.mktemp("airflow-metastore")
    env = {**os.environ, "AIRFLOW_HOME": str(template)}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)  # the default: AIRFLOW_HOME/airflow.db
    migrate = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr
    config = (template / "airflow.cfg").read_text()

    def copy_into(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template / "airflow.db", home / "airflow.db")
        (home / "airflow.cfg").write_text(config.replace(str(template), str(home)))
        return home

    return copy_into


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: a SQLite file, or a database of its own on the session's PostgreSQL.

    Every test that uses a store runs on both. At teardown the process-wide store and listener of that
    URL are closed.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    yield url
    close_store(url)


def close_store(url: str) -> None:
    """Stop the process-wide listener and dispose the process-wide store of ``url``, if any."""
    from airflow_edc_callbacks.store import listener as listener_module
    from airflow_edc_callbacks.store import repository

    for key in [k for k in listener_module._listeners if k[1] == url]:
        listener_module._listeners.pop(key).stop()
    for key in [k for k in repository._stores if k[1] == url]:
        repository._stores.pop(key).dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    s = EventStore(store_url)
    yield s
    s.dispose()


@pytest.fixture
def edc_config(monkeypatch: pytest.MonkeyPatch, store_url: str) -> str:
    """Point ``[edc_callbacks]`` at the fresh store and a fixed signing key."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__STORE_URL", store_url)
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_SIGNING_KEY", SIGNING_KEY.decode())
    return store_url


_unit = {"tests": 0, "failed": 0, "seconds": 0.0}
"""The unit tests of this session (for the compatibility results: the unit suite per Airflow version)."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the unit tests' outcomes; in the controller of an xdist session (its workers' reports reach it
    here) or in a session without xdist, never in a worker."""
    if "tests/unit/" in report.nodeid and _XDIST_WORKER is None:
        if report.when == "call":
            _unit["tests"] += 1
        _unit["failed"] += int(report.failed)
        _unit["seconds"] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Merge this session's compatibility outcomes into the results file (see :mod:`tests.compat.results`);
    an xdist worker's session leaves that to the controller."""
    from tests.compat import results

    if _XDIST_WORKER is not None:
        return
    # the whole unit suite only: a selection (a file, -k, -m, -x stopping early) says nothing about the suite
    config = session.config
    unit_dir = Path(__file__).parent / "unit"
    whole = any(Path(arg).resolve() == unit_dir for arg in config.args)
    whole = whole and not (config.option.keyword or config.option.markexpr or session.shouldstop)
    if _unit["tests"] and whole:
        import airflow

        tests, failed = int(_unit["tests"]), int(_unit["failed"])
        results.record_suite("unit", airflow.__version__, tests=tests, failed=failed, seconds=_unit["seconds"])
    results.write(results.RESULTS_FILE)


@pytest.fixture
def receiver(edc_config: str) -> Iterator[TestClient]:
    """The receiver app (no auth header required) on the test's store, signing with ``SIGNING_KEY``."""
    from fastapi.testclient import TestClient

    from airflow_edc_callbacks.receiver import ReceiverSettings, create_app

    settings = ReceiverSettings(store_url=edc_config, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    with TestClient(create_app(settings)) as client:
        yield client
