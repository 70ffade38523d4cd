"""A real Prefect server and ``candlecast serve``, each a subprocess, as a user runs them.

The server (``prefect server start`` on a free loopback port, its own PREFECT_HOME and a
scratch PostgreSQL database for its metadata) starts once per session; ``candlecast serve``
starts per test, on that test's migrated database and the loopback CDD mirror, with small
default parameters so a run of ``daily`` trains the tiny preset on the learnable WAVEUSDT
file. A failed test carries both subprocess logs, and a screenshot where a browser page was
open.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.e2e.harness import (
    BIN,
    SERVE_STARTUP_S,
    SMALL_RUN,
    PrefectServer,
    Process,
    Served,
    clean_env,
    free_port,
    poll,
    prefect_metadata_database,
    start,
    start_prefect_server,
)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free 127.0.0.1 port, with the UI calling that API, and
    its own metadata in a scratch PostgreSQL database, as README "Running in the Prefect UI"
    sets it up (a SQLite file where no PostgreSQL answers and CI is not true)."""
    home = tmp_path_factory.mktemp("prefect-server")
    with prefect_metadata_database(home) as database_url:
        server = start_prefect_server(home, free_port(), database_url, home / "server.log")
        try:
            yield server
        finally:
            server.process.stop()


@pytest.fixture
def prefect_client(prefect_server: PrefectServer) -> Iterator[SyncPrefectClient]:
    """A client of the test server, as the UI and `prefect` CLI talk to it."""
    with temporary_settings({PREFECT_API_URL: prefect_server.api_url}):
        with get_client(sync_client=True) as client:
            yield client


@pytest.fixture
def served(
    prefect_server: PrefectServer,
    prefect_client: SyncPrefectClient,
    db_url: str,
    cdd_mirror: str,
    tmp_path: Path,
) -> Iterator[Served]:
    """``candlecast serve`` on ``db_url`` and the CDD mirror, polling for runs of both
    deployments; the small parameters come in the way a user would override them."""
    env = clean_env(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_RUNNER_POLL_FREQUENCY="1",
        CANDLECAST_DATABASE_URL=db_url,
        CANDLECAST_CDD_BASE_URL=cdd_mirror,
        CANDLECAST_DATA_DIR=str(tmp_path / "data"),
        CANDLECAST_HTTP_BACKOFF_S="0",
        CANDLECAST_SERVE_PARAMETERS=json.dumps(SMALL_RUN),
        DO_NOT_TRACK="1",
    )
    started = datetime.now(UTC)
    process = start(
        "candlecast serve", [str(BIN / "candlecast"), "serve"], env, tmp_path / "serve.log"
    )
    try:
        for name in ("daily-forecast/daily", "backfill/backfill"):
            poll(
                lambda name=name: _polled_since(prefect_client, name, started),
                SERVE_STARTUP_S,
                f"runner polling for {name}",
                process,
                0.5,
            )
        yield Served(db_url, process)
    finally:
        process.stop(settle_s=10.0)  # a finished run's process exits by itself, uncancelled


def _polled_since(client: SyncPrefectClient, name: str, started: datetime) -> bool | None:
    """True once the served deployment ``name`` has been polled by a runner since ``started``."""
    try:
        deployment = client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None
    polled = deployment.last_polled
    return True if polled is not None and polled >= started else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure: both subprocess logs in the report, and a screenshot of an open page."""
    report: pytest.TestReport = yield
    if not report.failed:
        return report
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    for value in funcargs.values():
        process = getattr(value, "process", None)
        if isinstance(process, Process):
            report.sections.append((f"{process.name} log (tail)", process.tail()))
    page, tmp_path = funcargs.get("page"), funcargs.get("tmp_path")
    if report.when == "call" and page is not None and tmp_path is not None:
        path = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(path), full_page=True)
            report.sections.append(("screenshot", f"{path} (page {page.url})"))
        except Exception as exc:  # noqa: BLE001 - a failed screenshot must not hide the failure
            report.sections.append(("screenshot", f"none: {exc}"))
    return report
