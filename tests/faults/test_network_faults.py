"""Every network fault ends in a clear error naming the symbol and cause, retries only the
transient ones, and leaves the candles exactly as they were (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from candlecast.core.errors import FetchError, ParseError
from candlecast.core.settings import Settings
from db.schema import Candle, IngestRun
from db.session import session_factory
from tasks.ingest import ingest_symbol
from tests.rawserver import RawServer, never_answer, reset, truncated

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PATH = "/Binance_BTCUSDT_d.csv"
RETRIES = 2  # the settings fixture's http_retries: 3 attempts in all


def snapshot(url: str) -> tuple[int, float]:
    with session_factory(url)() as session:
        count = session.scalar(select(func.count()).select_from(Candle)) or 0
        closes = session.scalar(select(func.sum(Candle.close))) or 0.0
    return count, closes


def last_run(url: str) -> IngestRun:
    with session_factory(url)() as session:
        return session.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).one()


@pytest.fixture
def stored(settings: Settings) -> Settings:
    """The database already holds BTCUSDT's candles: a fault must not touch them."""
    ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    return settings


@pytest.fixture
def raw_servers() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


HTTP_FAULTS: list[tuple[str, Callable[[HTTPServer], None], type, str, int]] = [
    (
        "403",
        lambda s: s.expect_request(PATH).respond_with_data("no", status=403),
        FetchError,
        "HTTP 403",
        1,
    ),
    (
        "404",
        lambda s: s.expect_request(PATH).respond_with_data("no", status=404),
        FetchError,
        "HTTP 404",
        1,
    ),
    (
        "429",
        lambda s: s.expect_request(PATH).respond_with_data("slow", status=429),
        FetchError,
        "HTTP 429 .*gave up after 3 attempts",
        RETRIES + 1,
    ),
    (
        "500",
        lambda s: s.expect_request(PATH).respond_with_data("oops", status=500),
        FetchError,
        "HTTP 500 .*gave up after 3 attempts",
        RETRIES + 1,
    ),
    (
        "html-200",
        lambda s: s.expect_request(PATH).respond_with_data(
            "<!doctype html><title>Just a moment...</title>", content_type="text/html"
        ),
        ParseError,
        "received an HTML page",
        1,
    ),
    (
        "empty-200",
        lambda s: s.expect_request(PATH).respond_with_data(""),
        ParseError,
        "empty body",
        1,
    ),
    (
        "wrong-columns",
        lambda s: s.expect_request(PATH).respond_with_data("id,name,price\n1,BTC,100\n"),
        ParseError,
        "no CDD header",
        1,
    ),
]


@pytest.mark.parametrize(
    ("name", "respond", "error", "cause", "requests"), HTTP_FAULTS, ids=[f[0] for f in HTTP_FAULTS]
)
def test_http_fault_leaves_candles_untouched(
    stored: Settings,
    httpserver: HTTPServer,
    name: str,
    respond: Callable[[HTTPServer], None],
    error: type,
    cause: str,
    requests: int,
) -> None:
    url = stored.sqlalchemy_url()
    before = snapshot(url)
    respond(httpserver)
    settings = stored.model_copy(update={"cdd_base_url": httpserver.url_for("/")})
    with pytest.raises(error, match=f"^BTCUSDT: {cause}"):
        ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert len(httpserver.log) == requests  # retried only when transient
    assert snapshot(url) == before
    run = last_run(url)
    assert run.status == "failed" and run.error and run.inserted is None


RAW_FAULTS = [
    ("connection-reset", reset, "connection failed .*gave up after 3 attempts", RETRIES + 1),
    ("read-timeout", never_answer, "read timed out .*gave up after 3 attempts", RETRIES + 1),
]


@pytest.mark.parametrize(
    ("name", "handler", "cause", "connections"), RAW_FAULTS, ids=[f[0] for f in RAW_FAULTS]
)
def test_transport_fault_is_retried_then_reported(
    stored: Settings,
    raw_servers: list[RawServer],
    name: str,
    handler,
    cause: str,
    connections: int,
) -> None:
    url = stored.sqlalchemy_url()
    before = snapshot(url)
    server = RawServer(handler)
    raw_servers.append(server)
    settings = stored.model_copy(update={"cdd_base_url": server.url, "http_read_timeout_s": 0.5})
    with pytest.raises(FetchError, match=f"^BTCUSDT: {cause}"):
        ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert server.connections == connections
    assert snapshot(url) == before and last_run(url).status == "failed"


def test_truncated_body_is_retried_then_reported(
    stored: Settings, raw_servers: list[RawServer], cdd_dir: Path
) -> None:
    url = stored.sqlalchemy_url()
    before = snapshot(url)
    body = (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()
    server = RawServer(truncated(body[: len(body) // 3], announced=len(body)))
    raw_servers.append(server)
    settings = stored.model_copy(update={"cdd_base_url": server.url})
    with pytest.raises(FetchError, match="^BTCUSDT: connection broken mid-body"):
        ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert server.connections == RETRIES + 1
    assert snapshot(url) == before


def test_transient_fault_then_success_completes(
    stored: Settings, httpserver: HTTPServer, cdd_dir: Path
) -> None:
    body = (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()
    httpserver.expect_ordered_request(PATH).respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(PATH).respond_with_data(body)
    settings = stored.model_copy(update={"cdd_base_url": httpserver.url_for("/")})
    result = ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert (result.inserted, result.updated) == (0, 0)
    assert last_run(stored.sqlalchemy_url()).status == "success"
