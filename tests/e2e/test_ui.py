"""In a real browser: headless Chromium opens the Prefect UI of the test server, finds the
``daily`` deployment, clicks Run and then Quick run, and the flow run reaches Completed.

A failure saves a screenshot (its path is in the report, next to both subprocess logs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright
from prefect.client.orchestration import SyncPrefectClient

from tests.e2e.harness import (
    PrefectServer,
    Served,
    latest_forecasts,
    wait_for_final_state,
)

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
# how long the page may take to show what the server already has (Playwright's default is 5 s;
# the UI polls, and CI shares two cores with the server, the served flow and TensorFlow)
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium; skipped with a message where it is missing, unless CI=true."""
    if not CHROMIUM.exists():
        message = f"chromium not installed: {CHROMIUM} is missing (`make browser` as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the browser test must run)")
        pytest.skip(reason=message)
    return CHROMIUM


@pytest.fixture
def page(chromium: Path, prefect_server: PrefectServer, tmp_path: Path) -> Iterator[Page]:
    """A headless Chromium page that may only reach the test server (no third-party calls);
    ``tmp_path`` is where a failing test's screenshot goes."""

    def loopback_only(route: Route) -> None:
        if route.request.url.startswith(f"{prefect_server.url}/"):
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.route("**/*", loopback_only)
            yield page
        finally:
            browser.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_quick_run_from_the_ui_completes_and_writes_forecasts(
    chromium: Path,
    page: Page,
    served: Served,
    prefect_server: PrefectServer,
    prefect_client: SyncPrefectClient,
) -> None:
    deployment = prefect_client.read_deployment_by_name("daily-forecast/daily")

    page.goto(f"{prefect_server.url}/")
    page.get_by_role("link", name="Deployments").click()
    page.get_by_role("link", name="daily", exact=True).click()
    expect(page).to_have_url(re.compile(f"/deployments/deployment/{deployment.id}"))
    page.get_by_role("button", name="Run", exact=True).click()
    create = f"/api/deployments/{deployment.id}/create_flow_run"
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith(create)
    ) as created:
        page.get_by_role("menuitem", name="Quick run").click()
    # the UI's own request, read directly: the "Flow run created" toast lives 4 s, which a
    # loaded CI machine can miss, and an error answer (e.g. a 503 from a Prefect server on
    # SQLite, which the UI does not retry) is named here instead of "no run appeared"
    response = created.value
    assert response.ok, f"Quick run: {create} answered {response.status}: {response.text()}"
    flow_run_id = UUID(response.json()["id"])
    run_link = page.locator(f'a[href$="/runs/flow-run/{flow_run_id}"]').first
    expect(run_link).to_be_visible(timeout=UI_TIMEOUT_MS)
    run_link.click()
    expect(page).to_have_url(re.compile(f"/runs/flow-run/{flow_run_id}"))

    flow_run = wait_for_final_state(prefect_client, flow_run_id, served.process)
    assert flow_run.deployment_id == deployment.id and not flow_run.auto_scheduled
    assert flow_run.parameters == deployment.parameters  # Quick run: the served defaults
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state

    # the page follows the run: its state badge, then the artifacts a person looks at
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("tab", name="Artifacts").click()
    for key in ("daily-summary", "daily-forecasts", "plots-binance-waveusdt"):
        expect(page.get_by_text(key, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    # the plots artifact shows its five pictures, decoded by the browser (palette PNGs)
    page.get_by_text("plots-binance-waveusdt", exact=True).click()
    # counted, checked and measured in one evaluation: the artifact page renders its
    # markdown more than once (CI saw three pictures, then none a moment later)
    loaded = """selector => {
        const pictures = [...document.querySelectorAll(selector)];
        const done = pictures.length === 5 && pictures.every(i => i.complete);
        return done && pictures.map(i => i.naturalWidth);
    }"""
    selector = 'img[src^="data:image/png;base64,"]'
    widths = page.wait_for_function(loaded, arg=selector, timeout=UI_TIMEOUT_MS).json_value()
    # 0 for a picture the browser could not decode; the calibration plot is the narrow one
    assert widths == [1210] * 4 + [935], widths
    expect(page.get_by_text(re.compile(r"/reports/|\.png`?$"))).to_have_count(0)  # no paths
    run_url = f"{prefect_server.url}/runs/flow-run/{flow_run_id}"
    _the_summary_fits_and_closes_read_like_prices(page, run_url)
    _the_run_form_explains_each_parameter(page, deployment.id, prefect_server)

    rows = latest_forecasts(served.db_url, "WAVEUSDT")
    assert [r["horizon"] for r in rows] == [1, 2]
    assert {r["flow_run_id"] for r in rows} == {str(flow_run_id)}


def _artifact(page: Page, run_url: str, key: str) -> None:
    page.goto(run_url)
    expect(page.get_by_text("Completed", exact=True).first).to_be_visible()
    page.get_by_text("Artifacts", exact=True).first.click()
    expect(page.get_by_text(key, exact=True)).to_be_visible()
    page.get_by_text(key, exact=True).click()


def _the_summary_fits_and_closes_read_like_prices(page: Page, run_url: str) -> None:
    """At 1400 px the summary table stays inside its panel, and the forecast table quotes a
    predicted close with no more decimals than the close it starts from."""
    _artifact(page, run_url, "daily-summary")
    table = page.locator("table").first
    expect(table).to_be_visible()
    overflow = table.evaluate(
        "t => t.getBoundingClientRect().right - t.parentElement.getBoundingClientRect().right"
    )
    assert overflow <= 1, f"the summary table overflows its panel by {overflow} px"
    _artifact(page, run_url, "daily-forecasts")
    expect(page.get_by_text("predicted_close").first).to_be_visible()
    cells = page.locator("tr").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))"
    )
    rows = [r for r in cells if len(r) >= 7]
    assert rows, cells
    # predicted_close is the sixth column, persistence_close (the last close) the last
    decimals = [tuple(len(v.partition(".")[2]) for v in (r[5], r[-1])) for r in rows]
    assert all(predicted <= max(2, last) for predicted, last in decimals), rows


def _the_run_form_explains_each_parameter(
    page: Page, deployment_id: UUID, prefect_server: PrefectServer
) -> None:
    page.goto(f"{prefect_server.url}/deployments/deployment/{deployment_id}/run")
    expect(page.get_by_text("Processes or Dask workers", exact=False)).to_be_visible()
    expect(page.get_by_text("Days ahead to forecast", exact=False)).to_be_visible()
    expect(page.get_by_text("Property is type", exact=False)).to_have_count(0)
