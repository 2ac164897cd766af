"""Shared fixtures. AIRFLOW_HOME points at a fresh directory before Airflow is imported."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="edc-callbacks-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

import pytest  # noqa: E402

from airflow_edc_callbacks.store import EventStore  # noqa: E402

SIGNING_KEY = b"test-signing-key-0123456789"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store file."""
    return f"sqlite:///{tmp_path / 'events.db'}"


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
