"""Tractus-X EDRs: the three key shapes (placeholder fixtures in tests/fixtures/edr), the connection extra
``tractusx``, ``auto_refresh``, the single-flight refresh lock in the store, and what a 401/403 from the data
plane does. EDC core has no EDR refresh API, so the Tractus-X Management API and the provider's data plane are
a small real HTTP server here (``FakeTractusX``): it counts refreshes and answers 401 to a stale token."""

from __future__ import annotations

import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pyld import jsonld

from airflow_edc_callbacks.exceptions import EdcEdrRefused
from airflow_edc_callbacks.hooks import EdcConnectionSettings, EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.models import (
    EDC_NAMESPACE,
    TRACTUSX_AUTH_NAMESPACE,
    EndpointDataReference,
    context_terms,
    expand_key,
    expand_keys,
)
from airflow_edc_callbacks.store import EventStore
from tests.helpers import EDR_FIXTURES

FIXTURES = EDR_FIXTURES
SHAPES = {
    "A: TransferProcessStarted callback, full IRIs": ("a_transfer_process_started.json", ("payload", "dataAddress")),
    "B: older EDR API, tx-auth: prefix": ("b_edr_api_tx_auth.json", ()),
    "C: Tractus-X EDC 0.11/0.12, bare + full IRIs": ("c_tractusx_0_12.json", ()),
}


def shape(name: str) -> dict[str, Any]:
    file, path = SHAPES[name]
    document: Any = json.loads((FIXTURES / file).read_text())
    for key in path:
        document = document[key]
    return dict(document)


# -- the three key shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_three_key_shapes_read_alike(name: str) -> None:
    before = int(time.time())
    edr = EndpointDataReference.from_data_address("tp-shapes", shape(name))
    assert edr.endpoint == "https://provider.example/api/public"
    assert edr.authorization == "placeholder-access-token"
    assert edr.auth_type == "bearer"
    assert edr.endpoint_type == "https://w3id.org/idsa/v4.1/HTTP"
    assert edr.refresh_token == "placeholder-refresh-token"
    assert edr.refresh_endpoint == "https://provider.example/api/public/token"
    assert edr.expires_in == 300
    assert isinstance(edr.expires_in, int)
    assert edr.audience == "did:web:consumer.example"
    assert before <= edr.read_at <= int(time.time())
    assert edr.expires_at == edr.read_at + 300
    assert not edr.expired(now=edr.read_at + 299)
    assert edr.expired(now=edr.read_at + 300)
    assert edr.expired(now=edr.read_at + 290, leeway=10)
    for secret in ("placeholder-access-token", "placeholder-refresh-token"):
        assert secret not in repr(edr)
        assert secret not in str(edr)
    assert edr.secrets() == ["placeholder-access-token", "placeholder-refresh-token"]


def test_an_edr_without_refresh_data_never_expires() -> None:
    edr = EndpointDataReference("tp-1", "http://provider.example/public", "t", "bearer")
    assert (edr.refresh_token, edr.refresh_endpoint, edr.expires_in, edr.expires_at) == (None, None, None, None)
    assert not edr.expired(now=edr.read_at + 10**9)


@pytest.mark.parametrize(("wire", "seconds"), [("300", 300), (" 60 ", 60), (120, 120), ("300.0", 300), ("soon", None)])
def test_expires_in_is_an_int(wire: Any, seconds: int | None) -> None:
    address = {"endpoint": "http://p/public", f"{TRACTUSX_AUTH_NAMESPACE}expiresIn": wire}
    assert EndpointDataReference.from_data_address("tp-1", address).expires_in == seconds


@pytest.mark.parametrize("name", [n for n in SHAPES if not n.startswith("A")])
def test_prefixes_resolve_as_json_ld_expansion_does(name: str) -> None:
    """Cross-check with PyLD (offline: the fixtures' contexts are inline): every key PyLD expands, ours
    expands to the same IRI with the same value."""
    document = shape(name)
    expanded = jsonld.expand(document)[0]
    ours = expand_keys(document)
    by_pyld = {iri: values[0]["@value"] for iri, values in expanded.items() if iri != "@type"}
    assert len(by_pyld) >= 10
    assert {iri: ours[iri] for iri in by_pyld} == by_pyld


def test_context_terms_and_expand_key() -> None:
    context = [
        "https://w3id.org/edc/connector/management/v2",  # remote: skipped, never fetched
        {"@vocab": "https://vocab.example/", "tx-auth": "https://w3id.org/tractusx/auth/"},
        {"token": {"@id": "tx-auth:refreshToken"}, "ex": "https://ex.example/ns#"},
    ]
    terms, vocab = context_terms(context)
    assert vocab == "https://vocab.example/"
    assert terms == {
        "tx-auth": "https://w3id.org/tractusx/auth/",
        "token": "tx-auth:refreshToken",
        "ex": "https://ex.example/ns#",
    }
    assert expand_key("token", terms, vocab) == f"{TRACTUSX_AUTH_NAMESPACE}refreshToken"
    assert expand_key("tx-auth:expiresIn", terms, vocab) == f"{TRACTUSX_AUTH_NAMESPACE}expiresIn"
    assert expand_key("ex:a", terms, vocab) == "https://ex.example/ns#a"
    assert expand_key("endpoint", terms, vocab) == "https://vocab.example/endpoint"
    assert expand_key("https://w3id.org/tractusx/auth/audience", terms, vocab) == f"{TRACTUSX_AUTH_NAMESPACE}audience"
    assert expand_key("urn:x:y", terms, vocab) == "urn:x:y"  # an absolute IRI of another scheme
    assert expand_key("@type", terms, vocab) == "@type"
    # no context: the prefixes connectors use anyway, bare keys in the default vocabulary
    assert expand_key("edc:endpoint", {}, None) == f"{EDC_NAMESPACE}endpoint"
    assert expand_key("tx-auth:audience", {}, None) == f"{TRACTUSX_AUTH_NAMESPACE}audience"
    assert expand_key("endpoint", {}, None, EDC_NAMESPACE) == f"{EDC_NAMESPACE}endpoint"
    assert context_terms({"@vocab": None}) == ({}, None)


# -- the connection extra and the auto_refresh query ---------------------------------------------------------


class _Conn:
    conn_id = "edc_x"
    host = "http://consumer.example/management"
    port = None
    schema = None
    password = "k"

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra_dejson = extra


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), (True, True), (False, False), ("true", True), ("0", False)]
)
def test_the_tractusx_extra(value: Any, expected: bool) -> None:
    extra = {} if value is None else {"tractusx": value}
    assert EdcConnectionSettings.from_connection(_Conn(extra)).tractusx is expected


def test_a_mistyped_tractusx_extra_is_refused() -> None:
    with pytest.raises(ValueError, match="extra tractusx must be true or false, got 'tractus'"):
        EdcConnectionSettings.from_connection(_Conn({"tractusx": "tractus"}))


# -- a real HTTP server: the Tractus-X Management API's EDR endpoints and the provider's data plane -------


class FakeTractusX:
    """``GET /management/v3/edrs/{id}/dataaddress`` (the current EDR, shape C), ``POST
    /management/v3/edrs/{id}/refresh`` (counted; rotates the token to ``fresh-<n>``) and ``GET /public``
    (the data; 401 unless the ``Authorization`` header is the accepted token).

    :ivar hold_stale: hold each 401 until this many requests with a stale token have arrived (so that many
        fetchers meet the refused token at once), at most 10 s.
    """

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.token = "stale-token"
        self.accepted: set[str] = {"fresh-1"}
        self.refreshes = 0
        self.reads: list[dict[str, list[str]]] = []
        self.data_requests: list[str] = []
        self.stale_answers = 0
        self.hold_stale = 0
        self.rotate_on_refusal: str | None = None  # another task's refresh, seen on the next read
        self.refresh_refused = False  # the provider refuses the refresh (the connector answers 400)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path.startswith("/management/v3/edrs/") and url.path.endswith("/dataaddress"):
                    with fake.lock:
                        fake.reads.append(parse_qs(url.query))
                        address = fake.address()
                    self._json(200, address)
                elif url.path == "/public/items":
                    self._data()
                else:
                    self._json(404, [{"message": "Object not found", "type": "ObjectNotFound"}])

            def _data(self) -> None:
                token = self.headers.get("Authorization", "")
                with fake.lock:
                    fake.data_requests.append(token)
                    if token in fake.accepted:
                        ok = True
                    else:
                        ok = False
                        fake.stale_answers += 1
                        fake.lock.notify_all()
                        fake.lock.wait_for(lambda: fake.stale_answers >= fake.hold_stale, timeout=10)
                        if fake.rotate_on_refusal:
                            fake.token = fake.rotate_on_refusal
                if ok:
                    body = f"data for {token}".encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._json(401, {"error": "token expired or unknown"})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                if url.path.startswith("/management/v3/edrs/") and url.path.endswith("/refresh"):
                    if fake.refresh_refused:
                        fake.refreshes += 1
                        self._json(400, [{"message": "refresh token rejected by the provider", "type": "BadRequest"}])
                        return
                    with fake.lock:
                        fake.refreshes += 1
                        fake.token = f"fresh-{fake.refreshes}"
                        address = fake.address()
                    self._json(200, address)
                else:
                    self._json(404, [{"message": "Object not found", "type": "ObjectNotFound"}])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def address(self) -> dict[str, Any]:
        """The current EDR in shape C (Tractus-X EDC 0.12)."""
        return {
            "@type": "DataAddress",
            "endpoint": f"{self.url}/public",
            "authorization": self.token,
            "authType": "bearer",
            "type": "https://w3id.org/idsa/v4.1/HTTP",
            f"{TRACTUSX_AUTH_NAMESPACE}refreshToken": f"refresh-of-{self.token}",
            f"{TRACTUSX_AUTH_NAMESPACE}refreshEndpoint": f"{self.url}/public/token",
            f"{TRACTUSX_AUTH_NAMESPACE}expiresIn": "300",
            "@context": {"@vocab": EDC_NAMESPACE, "edc": EDC_NAMESPACE},
        }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, edc_config: str) -> Iterator[FakeTractusX]:
    server = FakeTractusX()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def use_connection(monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, **extra: Any) -> None:
    conn = {"conn_type": "edc", "host": f"{fake.url}/management", "password": "k", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps(conn))


def test_tractusx_connection_sends_auto_refresh(monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX) -> None:
    use_connection(monkeypatch, fake, tractusx=True)
    edr = EdcManagementHook(retries=0, ledger=StoreLedger()).get_edr("tp-q")
    EdcManagementHook(retries=0, ledger=StoreLedger()).get_edr("tp-q", auto_refresh=False)
    assert fake.reads == [{"auto_refresh": ["true"]}, {"auto_refresh": ["false"]}]  # Tractus-X's default is true
    assert (edr.authorization, edr.refresh_token, edr.expires_in) == ("stale-token", "refresh-of-stale-token", 300)
    from tests.airflow_compat import redacted

    assert redacted("a refresh-of-stale-token b") == "a *** b"  # both tokens are masked


def test_plain_edc_connection_sends_no_query(monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX) -> None:
    use_connection(monkeypatch, fake)
    EdcManagementHook(retries=0, ledger=StoreLedger()).get_edr("tp-q")
    assert fake.reads == [{}]


def test_a_refused_token_is_read_again_and_used_without_a_refresh(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, tmp_path: Path
) -> None:
    """Another task refreshed the EDR meanwhile: the re-read finds the new token, nobody refreshes again."""
    use_connection(monkeypatch, fake, tractusx=True)
    fake.accepted = {"refreshed-by-another-task"}
    fake.rotate_on_refusal = "refreshed-by-another-task"
    result = EdcManagementHook(retries=0, ledger=StoreLedger()).fetch_data("tp-r", tmp_path / "out.txt", path="items")
    assert Path(result.file).read_text() == "data for refreshed-by-another-task"
    assert fake.data_requests == ["stale-token", "refreshed-by-another-task"]
    assert fake.refreshes == 0
    assert len(fake.reads) == 2


def test_still_refused_after_one_refresh_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, tmp_path: Path
) -> None:
    use_connection(monkeypatch, fake, tractusx=True)
    fake.accepted = set()  # the provider accepts no token any more (agreement ended)
    with pytest.raises(EdcEdrRefused) as info:
        EdcManagementHook(retries=0, ledger=StoreLedger()).fetch_data(
            "tp-gone", tmp_path / "out.txt", path="items", params={"q": "1"}
        )
    error = info.value
    assert (error.transfer_process_id, error.status_code) == ("tp-gone", 401)
    assert error.url == f"{fake.url}/public/items"  # no query
    message = str(error)
    assert f"GET {fake.url}/public/items for transfer process tp-gone answered 401" in message
    assert "read the EDR again and refreshed it once" in message
    assert "Start a new transfer" in message
    assert "policy" in message
    assert "fresh-1" not in message
    assert "stale-token" not in message
    # bounded: the first try, no retry with the unchanged re-read token, one refresh, one retry
    assert fake.data_requests == ["stale-token", "fresh-1"]
    assert fake.refreshes == 1
    assert not (tmp_path / "out.txt").exists()


def test_a_refused_refresh_is_the_typed_error_too(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, tmp_path: Path
) -> None:
    use_connection(monkeypatch, fake, tractusx=True)
    fake.refresh_refused = True
    with pytest.raises(EdcEdrRefused) as info:
        EdcManagementHook(retries=0, ledger=StoreLedger()).fetch_data("tp-expired", tmp_path / "out.txt", path="items")
    message = str(info.value)
    assert f"GET {fake.url}/public/items for transfer process tp-expired answered 401" in message
    assert '({"error": "token expired or unknown"})' in message  # the data plane's answer, whole
    assert "asked the connector to refresh it, which failed" in message
    assert "refresh token rejected by the provider" in message
    assert "Start a new transfer" in message
    assert fake.refreshes == 1
    assert fake.data_requests == ["stale-token"]


def test_plain_edc_reads_again_but_never_refreshes(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, tmp_path: Path
) -> None:
    use_connection(monkeypatch, fake)
    with pytest.raises(EdcEdrRefused, match="set the connection's extra tractusx to true") as info:
        EdcManagementHook(retries=0, ledger=StoreLedger()).fetch_data("tp-plain", tmp_path / "out.txt", path="items")
    assert "after the task read the EDR again:" in str(info.value)
    assert fake.refreshes == 0
    assert fake.data_requests == ["stale-token"]
    assert fake.reads == [{}, {}]


def _fetcher(index: int, destination: str, results: Any) -> None:
    """One fetcher in a process of its own: its own hook, its own store engine and connections."""
    try:
        result = EdcManagementHook(retries=0, ledger=StoreLedger()).fetch_data("tp-many", destination, path="items")
        results.put((index, "ok", result.as_dict()))
    except Exception as err:  # reported to the test, which fails on it
        results.put((index, "error", repr(err)))


def test_eight_concurrent_fetchers_refresh_once(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTractusX, tmp_path: Path, edc_config: str
) -> None:
    """8 processes fetch with the same stale token; the data plane answers all 8 with 401 at once (it holds
    each 401 until all 8 arrived). Exactly one refresh reaches the connector; the 7 others wait for the lock,
    read the EDR again and use the refreshed token. On a SQLite file store and on PostgreSQL."""
    use_connection(monkeypatch, fake, tractusx=True)
    fake.hold_stale = 8
    EventStore(edc_config).dispose()  # the schema exists before the fetchers start (as the api-server does)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    fetchers = [context.Process(target=_fetcher, args=(i, str(tmp_path / f"out-{i}.txt"), results)) for i in range(8)]
    for process in fetchers:
        process.start()
    outcomes = {}
    try:
        for _ in fetchers:
            index, status, detail = results.get(timeout=60)
            outcomes[index] = (status, detail)
    except queue.Empty:
        pytest.fail(f"only {len(outcomes)} of 8 fetchers answered within 60 s: {outcomes}")
    finally:
        for process in fetchers:
            process.join(timeout=10)
    assert {i: status for i, (status, _) in outcomes.items()} == dict.fromkeys(range(8), "ok"), outcomes
    assert fake.refreshes == 1
    assert fake.stale_answers == 8
    assert sorted(fake.data_requests) == ["fresh-1"] * 8 + ["stale-token"] * 8
    for i in range(8):
        assert (tmp_path / f"out-{i}.txt").read_text() == "data for fresh-1"
        assert outcomes[i][1]["edr_source"] == "connector"
    after = EventStore(edc_config)
    assert after.try_lock_edr_refresh("tp-many", "after", 5)  # every fetcher released it
    after.dispose()


# -- the lock itself -----------------------------------------------------------------------------------------


def test_the_refresh_lock_is_exclusive_and_expires(store: EventStore) -> None:
    assert store.try_lock_edr_refresh("tp-1", "a", 60)
    assert not store.try_lock_edr_refresh("tp-1", "b", 60)
    assert store.try_lock_edr_refresh("tp-2", "b", 60)  # per transfer process
    assert store.try_lock_edr_refresh("tp-1", "a", 60)  # its holder renews it
    store.unlock_edr_refresh("tp-1", "b")  # not b's to release
    assert not store.try_lock_edr_refresh("tp-1", "b", 60)
    store.unlock_edr_refresh("tp-1", "a")
    assert store.try_lock_edr_refresh("tp-1", "b", 0.2)
    # b crashes: its lease runs out and the next holder takes over
    deadline = time.monotonic() + 5
    while not store.try_lock_edr_refresh("tp-1", "c", 60):
        assert time.monotonic() < deadline, "an expired lock was never taken over"
        time.sleep(0.05)
    assert not store.try_lock_edr_refresh("tp-1", "b", 60)


def test_purge_drops_locks_left_by_crashed_holders(store: EventStore) -> None:
    assert store.try_lock_edr_refresh("tp-old", "crashed", -3600)  # its lease ended an hour ago
    assert store.try_lock_edr_refresh("tp-new", "alive", 60)
    store.purge(timedelta(minutes=30))
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT process_id, holder FROM edc_edr_refresh_lock").all()
    assert [tuple(r) for r in rows] == [("tp-new", "alive")]


def test_mock_transport_sees_the_query_too(monkeypatch: pytest.MonkeyPatch, edc_config: str) -> None:
    """The same through an httpx transport (as the other hook tests): the v4 path gets the query as well."""
    conn = {"conn_type": "edc", "host": "http://c/management", "extra": {"api_version": "v4", "tractusx": "true"}}
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", json.dumps(conn))
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path}?{request.url.query.decode()}")
        return httpx.Response(404, json=[{"message": "Object not found", "type": "ObjectNotFound"}])

    with pytest.raises(Exception, match="answered 404"):
        EdcManagementHook(transport=httpx.MockTransport(answer), retries=0).get_edr("tp-4", use_callbacks=False)
    assert seen == [
        "/management/v4/edrs/tp-4/dataaddress?auto_refresh=true",
        "/management/v3/edrs/tp-4/dataaddress?auto_refresh=true",
    ]
