"""The operators' fixtures: a FAKE Management API (:class:`tests.fake_connector.FakeConnector`) as the
``edc_default`` connection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fake_connector import FakeConnector


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConnector]:
    fake = FakeConnector().start()
    conn = {"conn_type": "edc", "host": fake.url, "password": "key"}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps(conn))
    try:
        yield fake
    finally:
        fake.stop()
