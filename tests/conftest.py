"""Shared fixtures. AIRFLOW_HOME points at a fresh directory before Airflow is imported."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server (Debian's package, a throwaway cluster) for the session."""
    server = PostgresServer(int(os.environ.get("EDC_TEST_PG_PORT", "25432"))).start()
    yield server
    server.destroy()


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if "tests/unit/" in item.nodeid:
        if report.when == "call":
            _unit["tests"] += 1
        _unit["failed"] += int(report.failed)
        _unit["seconds"] += report.duration
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Merge this session's compatibility outcomes into the results file (see :mod:`tests.compat.results`)."""
    from tests.compat import results

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
