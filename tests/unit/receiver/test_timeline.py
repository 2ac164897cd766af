"""The task instance timeline page (the "EDC callbacks" tab): which stored events it shows, with their trust, and
that every value a sender wrote is escaped and no secret is shown; on a real store (SQLite and PostgreSQL).
Who may see it is tried here for a caller without a login (401, no data); the logged-in user's view, in a
real browser on a real Airflow, is in tests/e2e/test_timeline_view.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from airflow_edc_callbacks.plugin import EdcCallbacksPlugin, timeline_href
from airflow_edc_callbacks.receiver.timeline import MAX_REASON_CHARS, TaskInstanceRef, render_timeline, task_timeline
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import correlation_id_for
from tests.helpers import envelope, record_event
from tests.unit.receiver.test_server import BIN, Server, _env

RUN = "manual__2026-01-01T00:00:00+00:00"
TI = TaskInstanceRef("dag", RUN, "push")
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def _seed(store: EventStore) -> dict[str, str]:
    """The task's transfer tp-1 (bound to it), a stranger's event for tp-1, a static delivery, an event with the
    task's token about an unbound process, and another task's event; ``{name: envelope id}``."""
    cid = TI.correlation_id
    bodies = {
        "stranger": envelope("TransferProcessRequested", "tp-1", at=1_000),  # another task's token, before binding
        "early": envelope("TransferProcessStarted", "tp-1", at=2_000),  # the task's token, before binding
        "static": envelope("TransferProcessCompleted", "tp-1", at=3_000),
        "unbound": envelope("TransferProcessTerminated", "tp-x", at=4_000, reason="nobody's"),
        "other_task": envelope("TransferProcessCompleted", "tp-9", at=5_000),
    }
    record_event(store, bodies["stranger"], correlation_id=correlation_id_for("dag", RUN, "other"))
    record_event(store, bodies["early"], correlation_id=cid)
    store.bind("tp-1", cid)
    record_event(store, bodies["static"], correlation_id=None, route="static:prov")
    record_event(store, bodies["unbound"], correlation_id=cid)
    store.bind("tp-9", "another-task")
    record_event(store, bodies["other_task"], correlation_id="another-task")
    return {name: body["id"] for name, body in bodies.items()}


def test_the_timeline_holds_the_task_instance_events_in_store_order_with_their_trust(store: EventStore) -> None:
    before = int(time.time() * 1000)
    ids = _seed(store)
    after = int(time.time() * 1000)
    assert store.bound_to(TI.correlation_id) == ["tp-1"]

    rows, cut = task_timeline(store, TI)

    assert not cut
    assert [(r.envelope_id, r.event_type, r.process_id, r.trusted) for r in rows] == [
        (ids["stranger"], "TransferProcessRequested", "tp-1", False),
        (ids["early"], "TransferProcessStarted", "tp-1", True),
        (ids["static"], "TransferProcessCompleted", "tp-1", True),
        (ids["unbound"], "TransferProcessTerminated", "tp-x", False),
    ]
    assert [r.at for r in rows] == [1_000, 2_000, 3_000, 4_000]
    assert [r.routes for r in rows] == [("dynamic",), ("dynamic",), ("static:prov",), ("dynamic",)]
    assert rows[3].reason == "nobody's"
    assert all(before <= r.received_at <= after for r in rows)  # the receiver's clock, epoch ms
    assert task_timeline(store, TaskInstanceRef("dag", RUN, "push", map_index=0)) == ([], False)


def test_the_page_escapes_every_value_a_sender_wrote_and_shows_no_secret(store: EventStore) -> None:
    cid = TI.correlation_id
    signature = "c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
    record_event(store, envelope(f"TransferProcess{HOSTILE}", f"tp-{HOSTILE}", envelope_id=f"e{HOSTILE}"), cid)
    body = envelope(
        "TransferProcessTerminated",
        f"tp-{HOSTILE}",
        reason=f"{HOSTILE} see http://receiver/edc-callbacks/callbacks/{cid}.{signature} " + "x" * MAX_REASON_CHARS,
        dataAddress={"endpoint": "http://data/edr-endpoint", "authorization": "s3cr3t-edr-token"},
        callbackAddresses=[{"uri": f"http://receiver/edc-callbacks/callbacks/{cid}.{signature}"}],
    )
    record_event(store, body, correlation_id=cid)
    store.bind(f"tp-{HOSTILE}", cid)
    hostile_ti = TaskInstanceRef(f"dag{HOSTILE}", f"run{HOSTILE}", f"task{HOSTILE}", map_index=3)

    rows, _ = task_timeline(store, TI)
    page = render_timeline(hostile_ti, rows)

    assert "<img" not in page
    assert "<script" not in page
    # the title twice (dag, task), run, type, process twice, envelope id, reason
    assert page.count("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;") == 10
    assert "s3cr3t-edr-token" not in page
    assert "edr-endpoint" not in page
    assert signature not in page
    assert f"{cid}.***" in page
    assert "x" * MAX_REASON_CHARS not in page
    assert "…" in page
    assert "[3]" in page  # the map index of a mapped task
    assert page.count('<span class="ok">yes</span>') == 2  # both bound to the task: trusted
    assert '<span class="bad">' not in page


def test_times_are_utc_with_milliseconds_and_an_empty_timeline_says_why(store: EventStore) -> None:
    started = envelope("TransferProcessStarted", "tp-1", at=1_767_225_600_123)
    record_event(store, started, correlation_id=TI.correlation_id)
    rows, _ = task_timeline(store, TI)
    page = render_timeline(TI, rows)
    assert '<td class="time">2026-01-01<br>00:00:00.123<' in page
    assert "1 event in the callback store" in page
    empty = render_timeline(TI, [])
    assert "<table" not in empty
    assert "No callback events are stored for this task instance" in empty


def test_without_a_login_the_api_server_route_answers_401_and_no_data(store: EventStore) -> None:
    _seed(store)
    app = EdcCallbacksPlugin.fastapi_apps[0]["app"]
    client = TestClient(app)
    for path in (f"/timeline/dag/push/-1/{RUN}", "/timeline/dag/push/%7BMAP_INDEX%7D/" + RUN.replace("+", "%2B")):
        for headers in ({}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Cookie": "session=1"}):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.json() == {"detail": "Not authenticated"}
    assert client.get(f"/timeline/~/push/-1/{RUN}").status_code == 404  # every DAG at once: no such page
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/timeline")]


def test_the_plugin_adds_the_tab_to_the_task_instance_page(monkeypatch: pytest.MonkeyPatch) -> None:
    (view,) = EdcCallbacksPlugin.external_views
    assert view["destination"] == "task_instance"
    assert view["name"] == "EDC callbacks"
    assert view["href"] == "/edc-callbacks/timeline/{DAG_ID}/{TASK_ID}/{MAP_INDEX}/{RUN_ID}"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/team-a/")
    assert timeline_href() == "/team-a/edc-callbacks/timeline/{DAG_ID}/{TASK_ID}/{MAP_INDEX}/{RUN_ID}"


def test_airflows_api_server_serves_the_page_to_a_logged_in_viewer_and_nothing_to_anyone_else(
    tmp_path: Path, migrated_airflow_db: Callable[[Path], Path]
) -> None:
    """Airflow's own api-server with the plugin and the simple auth manager asking for a login: a viewer (the
    least role that may read task instances) gets the page by bearer token and by the UI's cookie."""
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"viewer-ada": "pw-of-ada"}))
    env = {
        **_env(tmp_path),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer-ada:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    migrated_airflow_db(Path(env["AIRFLOW_HOME"]))
    store = EventStore(env["AIRFLOW__EDC_CALLBACKS__STORE_URL"])
    try:
        ids = _seed(store)
    finally:
        store.dispose()
    server = Server([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", "0"], env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30, trust_env=False) as client:
            path = f"/edc-callbacks/timeline/dag/push/%7BMAP_INDEX%7D/{quote(RUN, safe='')}"
            refused = [client.get(path), client.get(path, headers={"Authorization": "Bearer not-a-jwt"})]
            assert [r.status_code for r in refused] == [401, 403]
            assert all("TransferProcess" not in r.text and ids["early"] not in r.text for r in refused)

            login = client.post("/auth/token", json={"username": "viewer-ada", "password": "pw-of-ada"})
            token = login.json()["access_token"]
            by_header = client.get(path, headers={"Authorization": f"Bearer {token}"})
            client.cookies.set("_token", token)  # as the UI's login page sets it
            by_cookie = client.get(path)
    finally:
        server.stop()
    for page in (by_header, by_cookie):
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert page.headers["cache-control"] == "no-store"
        assert [i in page.text for i in ids.values()] == [True, True, True, True, False]  # not the other task's
