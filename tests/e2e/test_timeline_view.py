"""The callbacks outside the raw log: the task instance's "EDC callbacks" tab in the real Airflow UI, in a real
browser (headless Chromium), after a real PUSH transfer; a request without a login gets no data.

The browser is Debian's ``/usr/bin/chromium`` (``$EDC_E2E_CHROMIUM``) driven by Playwright; the screenshots
are kept in ``.work/e2e/screenshots/`` (``timeline-{tab,view}-airflow-<version>.png``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from airflow_edc_callbacks.tokens import correlation_id_for, make_token
from demo import connectors as edc
from demo.airflow_env import AirflowStandalone
from tests.e2e.conftest import AIRFLOW_LOGIN, RECEIVER_BASE, WORK, EdcEnvironment, airflow_store, airflow_under_test
from tests.helpers import envelope

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("EDC_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = WORK / "screenshots"
PUSH_DAG = "example_edc_push_transfer"
TASK = "push_transfer"
HOSTILE = '<img src=x onerror="document.title=1"><script>document.title=2</script>'
"""A failure reason as a hostile sender might write it: the page must show it as text."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (or set EDC_E2E_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _run_push_transfer(env: EdcEnvironment, af: AirflowStandalone) -> tuple[str, str]:
    """Trigger the PUSH example and wait until its transfer task ended; ``(run id, final state)``."""
    af.wait_for_dag(PUSH_DAG)
    conf = {
        "contract_id": env.agreements[edc.DEMO_ASSET],
        "counter_party_address": env.connectors.provider_dsp_address,
        "sink_base_url": f"{env.data_server.url}/sink",
    }
    run_id = af.trigger_dag(PUSH_DAG, conf=conf)
    state = af.wait_for_task_state(PUSH_DAG, run_id, TASK, {"success", "failed"}, deadline_s=240)
    return run_id, state


def _not_blank(path: Path) -> tuple[int, float]:
    """``(distinct colours, share of the commonest colour)`` of a screenshot."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
        commonest = max(count for count, _ in colours)
        return len(colours), commonest / (rgb.width * rgb.height)


def test_timeline_tab_shows_the_task_instance_callbacks_to_a_logged_in_user_only(
    edc_env: EdcEnvironment, airflow: AirflowStandalone, browser: Any
) -> None:
    run_id, state = _run_push_transfer(edc_env, airflow)
    correlation_id = correlation_id_for(PUSH_DAG, run_id, TASK)
    store = airflow_store(airflow)
    transfers = store.bound_to(correlation_id)
    assert transfers, f"no transfer bound to the task ({state})"
    stored = [e for p in transfers for e in store.events(process_id=p)]
    assert stored, f"no callback stored for {transfers} ({state})"

    # an event with the task's own token about a process not bound to it: shown, untrusted, its reason as text
    key = (airflow.home / "edc_callbacks_signing.key").read_text().strip().encode()
    stranger = f"tp-stranger-{uuid.uuid4().hex[:8]}"
    hostile = envelope("TransferProcessTerminated", stranger, reason=HOSTILE, dataAddress={"authorization": "s3cr3t"})
    answer = httpx.post(f"{RECEIVER_BASE}/callbacks/{make_token(key, correlation_id)}", json=hostile, timeout=10)
    assert answer.status_code == 200, answer.text

    view = f"{airflow.ui_url}/edc-callbacks/timeline/{PUSH_DAG}/{TASK}/-1/{quote(run_id, safe='')}"
    # no login: no data, from the view itself, with a forged token, and in a browser without the cookie
    anonymous = httpx.get(view, timeout=30)
    assert anonymous.status_code == 401, anonymous.text
    forged = httpx.get(view, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert forged.status_code == 403, forged.text
    for refused in (anonymous, forged):
        assert transfers[0] not in refused.text
        assert "TransferProcess" not in refused.text
    with_token = httpx.get(view, headers={"Authorization": f"Bearer {airflow.token()}"}, timeout=30)
    assert with_token.status_code == 200, with_token.text
    assert transfers[0] in with_token.text

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {name: SCREENSHOTS / f"timeline-{name}-airflow-{airflow_under_test()}.png" for name in ("tab", "view")}
    stranger_context = browser.new_context()
    try:
        page = stranger_context.new_page()
        response = page.goto(view)
        assert response is not None
        assert response.status == 401
        assert "TransferProcess" not in page.content()
    finally:
        stranger_context.close()

    # the UI: log in on its login page, open the task instance's "EDC callbacks" tab
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        tab = f"{airflow.ui_url}/dags/{PUSH_DAG}/runs/{run_id}/tasks/{TASK}/plugin/edc_callbacks"  # as the UI links
        page.goto(tab)
        page.wait_for_selector("input[name=username]", timeout=60_000)  # the UI sent us to its login page
        page.fill("input[name=username]", AIRFLOW_LOGIN[0])
        page.fill("input[name=password]", AIRFLOW_LOGIN[1])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/plugin/edc_callbacks", timeout=60_000)
        # Airflow 3.1's login page sends the browser back to an unencoded "next" query parameter, whose "+"
        # (the run id's "+00:00") reads as a space: open the tab again, as a click in the UI would
        page.goto(tab)
        frame = page.frame_locator('iframe[title="EDC callbacks"]')
        frame.locator("table").wait_for(timeout=60_000)
        text = frame.locator("body").inner_text()
        page.get_by_text("No Task Instance found").wait_for(state="hidden", timeout=60_000)  # its header loaded
        page.screenshot(path=str(shots["tab"]))
        page.locator('iframe[title="EDC callbacks"]').screenshot(path=str(shots["view"]))

        for event in stored:
            assert event.event_type in text
            assert event.envelope_id in text
        for transfer in transfers:
            assert transfer in text
        assert stranger in text
        assert HOSTILE in text  # as text: no element was made of it, no script ran
        assert frame.locator("img").count() == 0
        assert frame.locator("script").count() == 0
        assert "s3cr3t" not in frame.locator("html").inner_html()
        assert frame.locator("tbody tr").count() == len(stored) + 1
        row = frame.locator("tbody tr", has_text=stranger)
        assert row.locator("td").nth(6).inner_text() == "no"  # trusted?
        trusted = [r.locator("td").nth(6).inner_text() for r in frame.locator("tbody tr").all()]
        assert trusted.count("yes") == len(stored)
    finally:
        context.close()

    # the screenshots show a page, not a blank: many colours, none covering nearly all of it
    for shot in shots.values():
        colours, commonest = _not_blank(shot)
        assert colours > 20, (shot, colours)
        assert commonest < 0.97, (shot, commonest)
