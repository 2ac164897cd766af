"""Group commit through the receiver's HTTP surface, on SQLite and on PostgreSQL: concurrent callbacks are
committed together, none is answered 2xx before the commit that includes its event, a failed commit is a 503
for every callback in it (and stores none of them), and a group keeps each callback's own answer
(stored, duplicate, conflict, wrong task)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from airflow_edc_callbacks.receiver import ReceiverSettings, create_app
from airflow_edc_callbacks.receiver import settings as receiver_settings
from airflow_edc_callbacks.receiver.group_commit import WRITERS
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.tokens import make_token
from tests.conftest import SIGNING_KEY
from tests.helpers import envelope

STATIC = {"conn_type": "edc_static_callback", "password": "st", "extra": {"events": ["transfer.process"]}}


class Commits:
    """Holds every commit of an engine until released; the commits listed after ``fail_after`` fail."""

    def __init__(self, engine: Any, fail_after: int | None = None) -> None:
        self.count = 0
        self.release = threading.Event()
        self.fail_after = fail_after
        self._lock = threading.Lock()
        event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, _connection: Any) -> None:
        with self._lock:
            self.count += 1
            number = self.count
        self.release.wait(20)
        if self.fail_after is not None and number > self.fail_after:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


@pytest.fixture
def writers() -> int:
    """Transactions the receiver runs at once: its default, or what a test is parametrized with."""
    return WRITERS


@pytest.fixture
async def receiver(
    store_url: str, writers: int, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The receiver app in this test's event loop (so its callbacks run concurrently), and its settings."""
    monkeypatch.setenv("AIRFLOW_CONN_EDC_STATIC_CALLBACK_PROV", json.dumps(STATIC))
    monkeypatch.setattr(receiver_settings, "WRITERS", writers)
    settings = ReceiverSettings(store_url=store_url, signing_key=SIGNING_KEY, auth=None, auth_from_config=False)
    await asyncio.to_thread(lambda: settings.store)  # opened (and migrated) before commits are watched
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client, settings


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.005)


async def occupy_writers(client: httpx.AsyncClient, commits: Commits, writers: int) -> list[asyncio.Future[Any]]:
    """One callback per writer, each held in its commit (posted one after another: one event per group)."""
    posts = []
    for i in range(writers):
        posts.append(dynamic(client, envelope("TransferProcessCompleted", f"first-{i}")))
        await until(lambda: commits.count == len(posts), f"callback {i} in its commit")
    return posts


async def queued(post: asyncio.Future[Any], committer: Any, count: int) -> asyncio.Future[Any]:
    """``post``, once ``count`` events wait for a writer (so the group's order is the order of the posts)."""
    await until(lambda: committer.waiting == count, f"{count} callbacks waiting")
    return post


WRITER_COUNTS = pytest.mark.parametrize(
    ("store_url", "writers"), [("sqlite", WRITERS), ("postgresql", WRITERS), ("postgresql", 2)], indirect=["store_url"]
)
"""The receiver's writers on both stores, and two on PostgreSQL (SQLite writes one transaction at a time)."""


def dynamic(client: httpx.AsyncClient, body: dict[str, Any], correlation: str = "task-a") -> asyncio.Future[Any]:
    return asyncio.ensure_future(client.post(f"/callbacks/{make_token(SIGNING_KEY, correlation)}", json=body))


def static(client: httpx.AsyncClient, body: dict[str, Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(
        client.post("/callbacks/static/prov", json=body, headers={"X-Edc-Callback-Auth": "st"})
    )


@WRITER_COUNTS
async def test_concurrent_callbacks_share_commits_and_none_is_answered_before_its_commit(
    receiver: tuple[httpx.AsyncClient, Any], store_url: str
) -> None:
    client, settings = receiver
    commits = Commits(settings.store.engine)
    writers = settings.group_committer().writers
    first = await occupy_writers(client, commits, writers)
    bodies = [envelope("TransferProcessCompleted", f"tp-{i}") for i in range(40)]
    posts = [dynamic(client, body) for body in bodies]
    await until(lambda: settings.group_committer().waiting == len(bodies), "all callbacks in")
    assert not any(post.done() for post in [*first, *posts])  # nothing answered while its commit is held
    commits.release.set()
    answers = await asyncio.gather(*first, *posts)

    assert [(a.status_code, a.json()["status"]) for a in answers] == [(200, "stored")] * (writers + len(bodies))
    assert commits.count == writers + 1  # the forty callbacks that waited: one transaction
    fresh = EventStore(store_url)  # another pool: what every reader of the store sees
    try:
        assert len({e.envelope_id for e in fresh.events()} & {b["id"] for b in bodies}) == len(bodies)
    finally:
        fresh.dispose()


@WRITER_COUNTS
async def test_a_failed_group_commit_is_a_503_for_each_of_its_callbacks_and_stores_none(
    receiver: tuple[httpx.AsyncClient, Any], store_url: str
) -> None:
    client, settings = receiver
    writers = settings.group_committer().writers
    commits = Commits(settings.store.engine, fail_after=writers)  # the first transactions commit, the group fails
    first = await occupy_writers(client, commits, writers)
    bodies = [envelope("TransferProcessCompleted", f"tp-{i}") for i in range(20)]
    posts = [dynamic(client, body) for body in bodies]
    await until(lambda: settings.group_committer().waiting == len(bodies), "all callbacks in")
    commits.release.set()
    assert [a.status_code for a in await asyncio.gather(*first)] == [200] * writers
    answers = await asyncio.gather(*posts)

    assert [(a.status_code, a.headers.get("Retry-After")) for a in answers] == [(503, "5")] * len(bodies)
    assert commits.count == writers + 1
    fresh = EventStore(store_url)
    try:
        assert {e.event_type for e in fresh.events()} == {"TransferProcessCompleted"}
        assert {e.process_id for e in fresh.events()} == {f"first-{i}" for i in range(writers)}
    finally:
        fresh.dispose()
    commits.fail_after = None  # the store works again: the connector's retry is stored
    retried = await dynamic(client, bodies[0])
    assert (retried.status_code, retried.json()["status"]) == (200, "stored")


async def test_one_group_keeps_each_callbacks_own_answer(receiver: tuple[httpx.AsyncClient, Any]) -> None:
    """Duplicates, conflicts and a token of another task in one transaction: answered as one after the other."""
    client, settings = receiver
    await asyncio.to_thread(settings.store.bind, "tp-bound", "task-b")
    commits = Commits(settings.store.engine)
    writers = settings.group_committer().writers
    blockers = await occupy_writers(client, commits, writers)
    committer = settings.group_committer()
    first = envelope("TransferProcessCompleted", "tp-1", envelope_id="env-1")
    same_reordered = dict(reversed(list(first.items())))
    other_body = envelope("TransferProcessTerminated", "tp-1", envelope_id="env-1", reason="forged")
    group = [
        await queued(dynamic(client, first, "task-a"), committer, 1),
        # the same event by the static route: a duplicate, the route added
        await queued(static(client, same_reordered), committer, 2),
        # a duplicate through another token: its correlation id stays the first one
        await queued(dynamic(client, same_reordered, "task-c"), committer, 3),
        # another body under the same id: a conflict
        await queued(dynamic(client, other_body, "task-a"), committer, 4),
        # a token of another task than the one its process is bound to
        await queued(dynamic(client, envelope("TransferProcessCompleted", "tp-bound"), "task-a"), committer, 5),
        await queued(dynamic(client, envelope("TransferProcessCompleted", "tp-bound"), "task-b"), committer, 6),
    ]
    commits.release.set()
    await asyncio.gather(*blockers)
    answers = await asyncio.gather(*group)

    assert commits.count == writers + 1  # the six callbacks in one transaction
    assert [(a.status_code, a.json().get("status")) for a in answers] == [
        (200, "stored"),
        (200, "duplicate"),
        (200, "duplicate"),
        (409, None),
        (403, None),
        (200, "stored"),
    ]
    [stored] = await asyncio.to_thread(settings.store.events, process_id="tp-1")
    assert (stored.body, stored.correlation_id, stored.routes) == (first, "task-a", ("dynamic", "static:prov"))
    [bound] = await asyncio.to_thread(settings.store.events, process_id="tp-bound")
    assert bound.correlation_id == "task-b"


async def test_a_serial_sender_gets_each_callback_committed_at_once(
    receiver: tuple[httpx.AsyncClient, Any], store_url: str
) -> None:
    """One callback after another, as a connector sends them: each starts a writer (none waits for company)."""
    client, _ = receiver
    bodies = [envelope("TransferProcessCompleted", f"tp-{i}") for i in range(200)]
    for body in bodies:
        answer = await asyncio.wait_for(dynamic(client, body), 10)
        assert (answer.status_code, answer.json()["status"]) == (200, "stored")
    fresh = EventStore(store_url)
    try:
        assert [e.envelope_id for e in fresh.events()] == [b["id"] for b in bodies]
    finally:
        fresh.dispose()
