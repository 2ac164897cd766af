"""The hook, the trigger's state-check fallback and the worker-side wait against the real connectors,
without Airflow's scheduler (the DAG-level tests are in test_dag_runs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_edc_callbacks.exceptions import EdcApiError, EdcTransferFailed
from airflow_edc_callbacks.hooks import EdcManagementHook
from airflow_edc_callbacks.ledger import StoreLedger
from airflow_edc_callbacks.operators import EdcTransferOperator
from airflow_edc_callbacks.store import EventStore
from airflow_edc_callbacks.triggers import EdcCallbackTrigger
from demo import connectors as edc
from demo.data_server import source_bytes
from tests.e2e.conftest import ATTEMPTS, EdcEnvironment, StaticSettings, consumer_connection_json
from tests.helpers import first_trigger_event, wait_until

pytestmark = pytest.mark.e2e

RECEIVER_PORT = 28099


@pytest.fixture
def edc_conn(edc_env: EdcEnvironment, monkeypatch: pytest.MonkeyPatch, edc_config: str) -> EdcManagementHook:
    monkeypatch.setenv("AIRFLOW_CONN_EDC_DEFAULT", edc_env.connection_json())
    return EdcManagementHook(ledger=StoreLedger())


def _serve(store_url: str) -> Iterator[str]:
    """``airflow-edc-callbacks serve`` in its own process on :data:`RECEIVER_PORT`, with this environment."""
    base = f"http://127.0.0.1:{RECEIVER_PORT}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_edc_callbacks.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(RECEIVER_PORT),
            "--store-url",
            store_url,
            "--log-level",
            "warning",
        ],
        env=dict(os.environ),
    )
    try:
        wait_until(lambda: _answers(f"{base}/health"), 30, "the standalone receiver")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def standalone_receiver(edc_config: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``airflow-edc-callbacks serve`` in its own process, writing to the test's store."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", f"http://127.0.0.1:{RECEIVER_PORT}")
    yield from _serve(edc_config)


@pytest.fixture
def authenticated_receiver(
    edc_config: str, monkeypatch: pytest.MonkeyPatch, static_settings: dict[str, StaticSettings]
) -> Iterator[str]:
    """The standalone receiver requiring ``X-Edc-Callback-Auth``: the secret the consumer connector holds
    in its vault (the consumer's static callback registration's, seeded at its start)."""
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_BASE_URL", f"http://127.0.0.1:{RECEIVER_PORT}")
    monkeypatch.setenv("AIRFLOW__EDC_CALLBACKS__CALLBACK_AUTH_SECRET", static_settings["consumer"].secret)
    yield from _serve(edc_config)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_hook_reads_states_and_reports_connector_errors(edc_env: EdcEnvironment, edc_conn: EdcManagementHook) -> None:
    with pytest.raises(EdcApiError) as info:
        edc_conn.get_transfer_state("no-such-transfer")
    assert info.value.status_code == 404
    assert "no-such-transfer" in str(info.value)
    assert edc_env.proxied_management_url in str(info.value)
    with pytest.raises(ValueError, match="contract_id must not be empty"):
        edc_conn.build_transfer_request(
            counter_party_address=edc_env.connectors.provider_dsp_address, contract_id="", transfer_type="HttpData-PUSH"
        )
    ok, message = edc_conn.test_connection()
    assert ok, message
    # EDC 0.15.1 as served by Maven Central has no Secrets API: the hook says so instead of failing
    assert edc_conn.put_secret("edc-static-callback-x", "value") is False


def test_hook_reads_negotiation_and_agreement(edc_env: EdcEnvironment, edc_conn: EdcManagementHook) -> None:
    agreement_id = edc_env.agreements[edc.DEMO_ASSET]
    with edc_env.connectors.client("consumer") as client:
        query = {"@context": {"@vocab": edc.EDC_NS}, "@type": "QuerySpec", "limit": 100}
        response = client.post("/v3/contractnegotiations/request", json=query)
    assert response.status_code == 200, response.text
    negotiations = response.json()
    negotiation_id = next(n["@id"] for n in negotiations if n.get("contractAgreementId") == agreement_id)
    negotiation = edc_conn.get_negotiation(negotiation_id)
    assert negotiation["state"] == "FINALIZED"
    assert negotiation["contractAgreementId"] == agreement_id
    agreement = edc_conn.get_agreement(negotiation_id)
    assert agreement["@id"] == agreement_id
    assert agreement["assetId"] == edc.DEMO_ASSET


def test_terminate_reaches_the_waiting_trigger_with_reason(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str, edc_config: str
) -> None:
    from airflow_edc_callbacks.tokens import get_signing_key, make_token

    correlation_id = "terminate-" + uuid.uuid4().hex[:8]
    callback = f"{standalone_receiver}/callbacks/{make_token(get_signing_key(), correlation_id)}"
    request = edc_conn.build_transfer_request(
        counter_party_address=edc_env.connectors.provider_dsp_address,
        contract_id=edc_env.slow_agreement(),
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": f"{edc_env.data_server.url}/sink/terminated"},
        callback_addresses=[edc_conn.callback_address(callback)],
    )
    store = EventStore(edc_config)
    for _ in range(ATTEMPTS):  # see ATTEMPTS: a transfer EDC 0.15.1 terminated by itself is started again
        transfer_id = edc_conn.start_transfer(request)
        seen = wait_until(
            lambda tp=transfer_id: (
                {e.event_type for e in store.events(process_id=tp)}
                & {"TransferProcessStarted", "TransferProcessTerminated"}
            ),
            30,
            "TransferProcessStarted",
        )
        if "TransferProcessTerminated" not in seen:
            break
    edc_conn.terminate_transfer(transfer_id, "stopped by the pipeline owner")
    trigger = EdcCallbackTrigger(
        correlation_id=correlation_id, transfer_process_id=transfer_id, fallback_check_interval=600
    )
    payload = asyncio.run(first_trigger_event(trigger, 120))
    assert payload["status"] == "failed"
    assert payload["source"] == "callback"
    assert payload["reason"] == "stopped by the pipeline owner"
    with pytest.raises(EdcApiError) as info:  # a second terminate: 409 with the connector's message
        edc_conn.terminate_transfer(transfer_id, "again")
    assert info.value.status_code == 409


def test_state_check_fallback_when_callbacks_are_lost(edc_env: EdcEnvironment, edc_conn: EdcManagementHook) -> None:
    """The receiver is down (nothing listens on its port): EDC retries, gives up and never re-delivers.
    After fallback_check_interval the trigger asks the connector once and resumes."""
    with socket.socket() as sock:  # a port with nothing behind it
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}/edc-callbacks/callbacks/lost"
    request = edc_conn.build_transfer_request(
        counter_party_address=edc_env.connectors.provider_dsp_address,
        contract_id=edc_env.agreements[edc.DEMO_ASSET],
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": f"{edc_env.data_server.url}/sink/fallback"},
        callback_addresses=[edc_conn.callback_address(down)],
    )
    for _ in range(ATTEMPTS):  # see ATTEMPTS
        transfer_id = edc_conn.start_transfer(request)
        if edc_env.final_state(transfer_id) == "COMPLETED":
            break
    before = len(edc_env.proxy.requests_for(transfer_id))
    trigger = EdcCallbackTrigger(
        correlation_id="fallback-" + uuid.uuid4().hex[:8],
        transfer_process_id=transfer_id,
        wait_for="completed",
        fallback_check_interval=1.0,
    )
    payload = asyncio.run(first_trigger_event(trigger, 120))
    assert payload["source"] == "state_check"
    assert payload["status"] == "success"
    assert payload["state"] == "COMPLETED"
    assert payload["asset_id"] == edc.DEMO_ASSET
    requests = edc_env.proxy.requests_for(transfer_id)[before:]
    expected = ("GET", f"{edc.CONSUMER.management_path}/v3/transferprocesses/{transfer_id}")
    assert [(method, path) for _, method, path in requests] == [expected]  # one request: the state check


def test_operator_waits_in_worker_when_not_deferrable(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str, edc_config: str
) -> None:
    for _ in range(ATTEMPTS):  # see ATTEMPTS
        run_id = f"manual__{uuid.uuid4().hex}"
        ti = SimpleNamespace(dag_id="worker_mode", run_id=run_id, task_id="push", map_index=-1, try_number=1)
        operator = EdcTransferOperator(
            task_id="push",
            contract_id=edc_env.agreements[edc.DEMO_ASSET],
            counter_party_address=edc_env.connectors.provider_dsp_address,
            transfer_type="HttpData-PUSH",
            data_destination={"type": "HttpData", "baseUrl": f"{edc_env.data_server.url}/sink/worker-{run_id}"},
            deferrable=False,
            timeout=120,
            fallback_check_interval=600,
        )
        started = time.monotonic()
        try:
            result = operator.execute({"ti": ti})  # type: ignore[arg-type]
            break
        except EdcTransferFailed as err:
            if err.reason is not None:
                raise
    assert time.monotonic() - started < 60
    assert result["state"] == "COMPLETED"
    assert result["source"] == "callback"
    stored = EventStore(edc_config).events(process_id=result["transfer_process_id"])
    assert stored[-1].event_type == "TransferProcessCompleted"
    assert edc_env.proxy.requests_for(result["transfer_process_id"]) == []
    arrived = [r for r in edc_env.data_server.received() if f"worker-{run_id}" in r["path"]]
    assert Path(arrived[0]["file"]).read_bytes() == source_bytes(edc.DEMO_ASSET)

    # another try of the same task instance: the earlier transfer is finished, so a new one starts
    ti.try_number = 2
    broken = EdcTransferOperator(
        task_id="push",
        contract_id=edc_env.agreements[edc.BROKEN_ASSET],
        counter_party_address=edc_env.connectors.provider_dsp_address,
        transfer_type="HttpData-PUSH",
        data_destination={"type": "HttpData", "baseUrl": f"{edc_env.data_server.url}/sink/never"},
        deferrable=False,
        timeout=120,
        fallback_check_interval=600,
    )
    with pytest.raises(EdcTransferFailed) as info:
        broken.execute({"ti": ti})  # type: ignore[arg-type]
    assert info.value.transfer_process_id != result["transfer_process_id"]
    assert info.value.state == "TERMINATED"
    assert info.value.transfer_process_id in str(info.value)  # EDC 0.15 consumers give no reason here


def test_retry_after_worker_crash_waits_for_the_running_transfer(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str
) -> None:
    """Guarantee 8: try 1 started a transfer and its worker died; try 2 must not start a second
    transfer while the first still runs, even before any callback of try 1 was stored."""
    from tests.airflow_compat import TaskDeferred

    agreement = edc_env.slow_agreement()
    ti = SimpleNamespace(
        dag_id="crash", run_id=f"manual__{uuid.uuid4().hex}", task_id="push", map_index=-1, try_number=1
    )

    def operator() -> EdcTransferOperator:
        return EdcTransferOperator(
            task_id="push",
            contract_id=agreement,
            counter_party_address=edc_env.connectors.provider_dsp_address,
            transfer_type="HttpData-PUSH",
            data_destination={"type": "HttpData", "baseUrl": f"{edc_env.data_server.url}/sink/slow"},
            deferrable=True,
            defer_after=0,  # this test is about the deferral (its trigger kwargs and hold)
        )

    start_path = f"{edc.CONSUMER.management_path}/v3/transferprocesses"
    for _ in range(ATTEMPTS):  # see ATTEMPTS: try 1's transfer must still be running for this test
        ti.run_id = f"manual__{uuid.uuid4().hex}"
        ti.try_number = 1
        starts_before = len([r for r in edc_env.proxy.requests if r[1:] == ("POST", start_path)])
        deferred_at = time.time()
        with pytest.raises(TaskDeferred) as first:
            operator().execute({"ti": ti})  # type: ignore[arg-type]
        transfer_id = first.value.trigger.transfer_process_id
        if edc_env.consumer_state(transfer_id) != "TERMINATED":
            break
    assert first.value.method_name == "execute_complete"
    # the trigger decides the 24 h time-out; Airflow's deferral time-out is a safety net 60 s later
    assert first.value.timeout.total_seconds() == 24 * 3600 + 60
    _, kwargs = first.value.trigger.serialize()
    assert kwargs["deadline"] - kwargs["waiting_since"] == pytest.approx(24 * 3600)
    assert kwargs["wait_for"] == "completed"
    # held until the deferring worker has exited: [workers] min_heartbeat_interval (default 5) + 1 s
    assert 5.5 < kwargs["not_before"] - deferred_at < 7.5
    assert edc_env.connectors.consumer_api_key not in str(kwargs)
    # try 2 of the same task instance, right away: no callback of try 1 needs to have arrived
    ti.try_number = 2
    with pytest.raises(TaskDeferred) as second:
        operator().execute({"ti": ti})  # type: ignore[arg-type]
    assert second.value.trigger.transfer_process_id == transfer_id
    assert len([r for r in edc_env.proxy.requests if r[1:] == ("POST", start_path)]) - starts_before == 1


def test_negotiation_reports_through_callbacks(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str, edc_config: str
) -> None:
    """Catalog -> offer -> contract request with a callback address: the connector's negotiation events
    reach the receiver, Finalized carries the contract agreement; a tampered offer ends Terminated."""
    from airflow_edc_callbacks.tokens import get_signing_key, make_token

    provider = edc_env.connectors
    offer = edc_conn.find_offer(
        edc_conn.request_catalog(
            provider.provider_dsp_address, counter_party_id=provider.provider_id, asset_id="demo-asset"
        ),
        "demo-asset",
    )
    store = EventStore(edc_config)
    outcomes = {}
    for label, policy in (("agreed", offer), ("tampered", {**offer, "@id": offer["@id"] + "x"})):
        correlation_id = f"negotiation-{label}-{uuid.uuid4().hex[:6]}"
        callback = edc_conn.callback_address(
            f"{standalone_receiver}/callbacks/{make_token(get_signing_key(), correlation_id)}",
            events=["contract.negotiation"],
        )
        request = edc_conn.build_contract_request(
            counter_party_address=provider.provider_dsp_address,
            offer=policy,
            assigner=provider.provider_id,
            target="demo-asset",
            callback_addresses=[callback],
        )
        negotiation_id = edc_conn.start_negotiation(request)
        outcomes[label] = (
            negotiation_id,
            wait_until(
                lambda cid=correlation_id: [
                    e
                    for e in store.events(correlation_id=cid)
                    if e.event_type in ("ContractNegotiationFinalized", "ContractNegotiationTerminated")
                ],
                60,
                f"the {label} negotiation's final callback",
            )[0],
        )
    agreed_id, finalized = outcomes["agreed"]
    assert finalized.event_type == "ContractNegotiationFinalized"
    assert finalized.process_id == agreed_id
    agreement_id = finalized.payload["contractAgreement"]["id"]
    assert edc_conn.get_negotiation(agreed_id)["contractAgreementId"] == agreement_id
    assert edc_conn.get_agreement(agreed_id)["assetId"] == "demo-asset"
    tampered_id, terminated = outcomes["tampered"]
    assert terminated.event_type == "ContractNegotiationTerminated"
    assert edc_conn.get_negotiation(tampered_id)["state"] == "TERMINATED"


def test_negotiation_operator_resumes_on_callbacks(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str
) -> None:
    from airflow_edc_callbacks.exceptions import EdcNegotiationFailed
    from airflow_edc_callbacks.operators import EdcContractNegotiationOperator

    def operator(**kwargs: object) -> EdcContractNegotiationOperator:
        return EdcContractNegotiationOperator(
            task_id="negotiate",
            asset_id=edc.DEMO_ASSET,
            counter_party_address=edc_env.connectors.provider_dsp_address,
            counter_party_id=edc_env.connectors.provider_id,
            deferrable=False,
            timeout=120,
            fallback_check_interval=600,
            **kwargs,
        )

    def ti() -> SimpleNamespace:
        return SimpleNamespace(dag_id="negotiation", run_id=uuid.uuid4().hex, task_id="negotiate", map_index=-1)

    result = operator().execute({"ti": ti()})  # type: ignore[arg-type]
    assert result["state"] == "FINALIZED"
    assert result["source"] == "callback"
    assert [t["type"] for t in result["timeline"]][-1] == "ContractNegotiationFinalized"
    assert edc_env.proxy.requests_for(result["contract_negotiation_id"]) == []  # never polled
    negotiation = edc_conn.get_negotiation(result["contract_negotiation_id"])
    assert negotiation["contractAgreementId"] == result["contract_agreement_id"]

    catalog = edc_conn.request_catalog(edc_env.connectors.provider_dsp_address, asset_id=edc.DEMO_ASSET)
    offer = edc_conn.find_offer(catalog, edc.DEMO_ASSET)
    with pytest.raises(EdcNegotiationFailed) as info:  # an offer the provider never made
        operator(offer={**offer, "@id": offer["@id"] + "x"}).execute({"ti": ti()})  # type: ignore[arg-type]
    failed = edc_conn.get_negotiation(info.value.contract_negotiation_id)
    assert failed["state"] == "TERMINATED"
    assert info.value.reason == failed.get("errorDetail")
    assert info.value.contract_negotiation_id in str(info.value)


def test_pull_transfer_data_through_the_hook(
    edc_env: EdcEnvironment, edc_conn: EdcManagementHook, standalone_receiver: str, edc_config: str, tmp_path: Path
) -> None:
    """A PULL transfer's EDR comes from the connector's EDR cache (the stored Started callback holds the
    same) and fetches the provider's data; once the transfer is terminated no EDR is handed out any more,
    and the provider refuses the old one."""
    from airflow_edc_callbacks.edr import fetch_to_file
    from airflow_edc_callbacks.exceptions import EdcDataFetchError, EdcEdrNotFound
    from airflow_edc_callbacks.models import EndpointDataReference
    from airflow_edc_callbacks.tokens import get_signing_key, make_token

    correlation_id = "pull-" + uuid.uuid4().hex[:8]
    callback = f"{standalone_receiver}/callbacks/{make_token(get_signing_key(), correlation_id)}"
    request = edc_conn.build_transfer_request(
        counter_party_address=edc_env.connectors.provider_dsp_address,
        contract_id=edc_env.agreements[edc.DEMO_ASSET],
        transfer_type="HttpData-PULL",
        callback_addresses=[edc_conn.callback_address(callback)],
    )
    store = EventStore(edc_config)
    for _ in range(ATTEMPTS):  # see ATTEMPTS: a transfer EDC 0.15.1 terminated by itself is started again
        transfer_id = edc_conn.start_transfer(request)
        seen = wait_until(
            lambda tp=transfer_id: [
                e
                for e in store.events(process_id=tp)
                if e.event_type in ("TransferProcessStarted", "TransferProcessTerminated")
            ],
            30,
            "TransferProcessStarted",
        )
        if seen[0].event_type == "TransferProcessStarted":
            break
    started = seen[0]
    assert started.event_type == "TransferProcessStarted"

    edr = edc_conn.get_edr(transfer_id)
    public = f"http://localhost:{edc.PROVIDER.public_port}{edc.PROVIDER.public_path}"
    assert (edr.source, edr.endpoint, edr.auth_type) == ("connector", public, "bearer")
    from_callback = EndpointDataReference.from_data_address(transfer_id, started.payload["dataAddress"])
    assert (from_callback.endpoint, from_callback.authorization) == (edr.endpoint, edr.authorization)

    result = edc_conn.fetch_data(transfer_id, tmp_path / "pulled.json")
    assert (tmp_path / "pulled.json").read_bytes() == source_bytes(edc.DEMO_ASSET)
    assert result.size == len(source_bytes(edc.DEMO_ASSET))

    edc_conn.terminate_transfer(transfer_id, "data fetched")
    wait_until(
        lambda: [e for e in store.events(process_id=transfer_id) if e.event_type == "TransferProcessTerminated"],
        30,
        "TransferProcessTerminated",
    )
    # the ended transfer has no EDR any more: not from the connector, and not from its stored callback
    with pytest.raises(EdcEdrNotFound, match=r"moved on after it started \(TransferProcessTerminated"):
        edc_conn.get_edr(transfer_id)
    provider_id = edc_conn.get_transfer_process(transfer_id)["correlationId"]  # the provider's process
    with edc_env.connectors.client("provider") as provider:
        wait_until(
            lambda: (
                provider.get(f"/v3/transferprocesses/{provider_id}/state").json()["state"]
                in ("TERMINATED", "DEPROVISIONED")
            ),
            30,
            "the provider to terminate its side and revoke the EDR",
        )
    with pytest.raises(EdcDataFetchError) as refused:  # and the provider refuses the old token
        fetch_to_file(edr, tmp_path / "again.json")
    assert refused.value.status_code == 403
    assert transfer_id in str(refused.value)
    assert not (tmp_path / "again.json").exists()


@pytest.mark.parametrize("api_version", ["v3", "v4beta"])
def test_callbacks_carry_the_auth_header_on_each_api_version(
    edc_env: EdcEnvironment,
    authenticated_receiver: str,
    edc_config: str,
    static_settings: dict[str, StaticSettings],
    monkeypatch: pytest.MonkeyPatch,
    api_version: str,
) -> None:
    """With a callback secret, the receiver refuses callbacks without it (401): events are stored only if
    the connector sent the header, i.e. kept the connection's authKey/authCodeId (v4: edc:-prefixed)."""
    from airflow_edc_callbacks.tokens import get_signing_key, make_token

    conn = json.loads(consumer_connection_json(api_version))
    conn["extra"] |= {
        "callback_auth_key": "X-Edc-Callback-Auth",
        "callback_auth_code_id": static_settings["consumer"].vault_alias,
    }
    monkeypatch.setenv("AIRFLOW_CONN_EDC_AUTH", json.dumps(conn))
    hook = EdcManagementHook("edc_auth")
    correlation_id = f"auth-{api_version}-{uuid.uuid4().hex[:6]}"
    callback = f"{authenticated_receiver}/callbacks/{make_token(get_signing_key(), correlation_id)}"
    assert httpx.post(callback, json={}).status_code == 401  # the receiver does require it
    transfer_id = hook.start_transfer(
        hook.build_transfer_request(
            counter_party_address=edc_env.connectors.provider_dsp_address,
            contract_id=edc_env.agreements[edc.DEMO_ASSET],
            transfer_type="HttpData-PULL",
            callback_addresses=[hook.callback_address(callback)],
        )
    )
    store = EventStore(edc_config)

    def arrived() -> list[Any] | None:  # Initiated, and Started (or Terminated: an EDC 0.15.1 race, see ATTEMPTS)
        found = store.events(correlation_id=correlation_id)
        types = {e.event_type for e in found}
        ended = types & {"TransferProcessStarted", "TransferProcessTerminated"}
        return found if "TransferProcessInitiated" in types and ended else None

    stored = wait_until(arrived, 30, "authenticated callbacks from Initiated to Started")
    assert {e.process_id for e in stored} == {transfer_id}
    with contextlib.suppress(EdcApiError):  # cleanup; EDC 0.15.1 may have ended it already (409)
        hook.terminate_transfer(transfer_id, "auth checked")
