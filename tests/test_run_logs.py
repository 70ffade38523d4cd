"""What an ingest logs inside a Prefect run reaches that run's logs, at the right level."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pytest_httpserver import HTTPServer

from candlecast.core.settings import Settings
from tasks.ingest import IngestResult, ingest_symbol

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PATH = "/Binance_ETHUSDT_1h.csv"


def run_logs(flow_run_id: object) -> dict[str, int]:
    """The level of each message the Prefect API holds for the flow run and its tasks."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler sends in batches: wait until they are sent
    only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return {log.message: log.level for log in client.read_logs(only_this_run)}


def test_retries_and_data_warnings_are_warnings_in_the_runs_logs(
    prefect_harness: None, settings: Settings, httpserver: HTTPServer, cdd_dir: Path
) -> None:
    from prefect import flow

    httpserver.expect_ordered_request(PATH).respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(PATH).respond_with_data((cdd_dir / PATH[1:]).read_bytes())
    http = settings.model_copy(update={"cdd_base_url": httpserver.url_for("/")})

    @flow(name="ingest-eth-hourly")
    def ingest_eth() -> IngestResult:
        return ingest_symbol("ETHUSDT", timeframe="1h", settings=http, now=NOW)

    state = ingest_eth(return_state=True)
    result = state.result()
    levels = run_logs(state.state_details.flow_run_id)
    retry = f"ETHUSDT: HTTP 503 from {httpserver.url_for(PATH)}; retry 1 of 2 in 0.0 s"
    assert levels[retry] == logging.WARNING
    assert {w["kind"] for w in result.warnings} == {"null_volume", "missing", "quarantined"}
    for warning in result.warnings:
        assert levels[f"ETHUSDT: {warning['message']}"] == logging.WARNING
    assert levels[result.line()] == logging.INFO
