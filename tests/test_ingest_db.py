"""Ingestion into SQLite and PostgreSQL, for real: counts, idempotency, nothing half-written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from candlecast.core.errors import FetchError, ParseError, ValidationError
from candlecast.core.settings import Settings
from db.migrate import current_revision, head_revision, upgrade
from db.queries import load_candles
from db.schema import Candle, IngestRun, RejectedCandle
from db.session import get_engine, session_factory
from tasks.ingest import ingest_symbol

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
COMPLETE = {"BTCUSDT": 2981, "ETHUSDT": 1407, "ADAUSDT": 1164, "BNBUSDT": 1271}


def count(url: str, model: type) -> int:
    with session_factory(url)() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def runs(url: str) -> list[IngestRun]:
    with session_factory(url)() as session:
        return list(session.scalars(select(IngestRun).order_by(IngestRun.id)))


@pytest.mark.parametrize("symbol", sorted(COMPLETE))
def test_each_file_stores_its_distinct_complete_candles(settings: Settings, symbol: str) -> None:
    result = ingest_symbol.fn(symbol, settings=settings, now=NOW)
    assert (result.inserted, result.updated) == (COMPLETE[symbol], 0)
    assert count(settings.sqlalchemy_url(), Candle) == COMPLETE[symbol]
    again = ingest_symbol.fn(symbol, settings=settings, now=NOW)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, COMPLETE[symbol])


def test_hourly_file_and_reingest_writes_nothing(settings: Settings) -> None:
    first = ingest_symbol.fn("BTCUSDT", timeframe="1h", settings=settings, now=NOW)
    assert (first.inserted, len(first.missing)) == (33413, 16)
    second = ingest_symbol.fn("BTCUSDT", timeframe="1h", settings=settings, now=NOW)
    assert (second.inserted, second.updated) == (0, 0)
    assert count(settings.sqlalchemy_url(), Candle) == 33413


def test_ingest_run_is_recorded(settings: Settings, cdd_dir: Path) -> None:
    result = ingest_symbol.fn("ETHUSDT", settings=settings, now=NOW)
    (run,) = runs(settings.sqlalchemy_url())
    body = (cdd_dir / "Binance_ETHUSDT_d.csv").read_bytes()
    assert run.id == result.run_id and run.status == "success"
    assert (run.rows_parsed, run.inserted, run.updated, run.bytes) == (1409, 1407, 0, len(body))
    assert run.first_candle == datetime(2017, 8, 17, tzinfo=UTC)
    assert run.last_candle == datetime(2021, 6, 23, tzinfo=UTC)
    assert {w["kind"] for w in run.warnings} == {"duplicates", "probably_open"}
    assert run.finished_at is not None and run.error is None


def test_eth_hourly_file_stores_all_but_its_bad_row(settings: Settings) -> None:
    result = ingest_symbol.fn("ETHUSDT", timeframe="1h", settings=settings, now=NOW)
    assert (result.rows_parsed, result.inserted, result.quarantined) == (336, 335, 1)
    assert result.missing == ["2019-11-04 08:00"]  # the bad row's hour, reported like a gap
    assert {w["kind"] for w in result.warnings} == {"null_volume", "missing", "quarantined"}
    url = settings.sqlalchemy_url()
    with session_factory(url)() as session:
        stored = load_candles(session, "Binance", "ETHUSDT", "1h")
        (bad,) = session.scalars(select(RejectedCandle)).all()
    assert len(stored) == 335 and pd.Timestamp("2019-11-04 08:00", tz="UTC") not in stored.index
    nan_volume = stored.loc[pd.Timestamp("2019-11-07 03:00", tz="UTC")]
    assert pd.isna(nan_volume["volume_quote"]) and nan_volume["volume_base"] == 47422.8856
    assert (bad.row_number, bad.reason, bad.open_time) == (
        232,
        "non-positive price",
        datetime(2019, 11, 4, 8, tzinfo=UTC),
    )
    assert bad.raw == {
        "Unix": "1572854400000",
        "Date": "2019-11-04 08:00:00",
        "Symbol": "ETHUSDT",
        "Open": "0.0",
        "High": "184.03",
        "Low": "0.0",
        "Close": "184.03",
        "Volume ETH": "56488.5572",
        "Volume USDT": "10409146.435244",
        "tradecount": "5205",
    }
    again = ingest_symbol.fn("ETHUSDT", timeframe="1h", settings=settings, now=NOW)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 335)
    assert count(url, RejectedCandle) == 1


def test_gemini_file_over_an_http_mirror(settings: Settings, cdd_mirror: str) -> None:
    http = settings.model_copy(update={"cdd_base_url": cdd_mirror})
    result = ingest_symbol.fn("BTCUSD", exchange="Gemini", timeframe="1h", settings=http, now=NOW)
    assert (result.inserted, result.missing, result.quarantined) == (326, [], 0)
    assert result.line().startswith("Gemini BTCUSD 1h: 326 rows parsed, 326 inserted")
    (run,) = runs(settings.sqlalchemy_url())
    assert (run.url, run.http_status) == (f"{cdd_mirror}/Gemini_BTCUSD_1h.csv", 200)
    with session_factory(settings.sqlalchemy_url())() as session:
        stored = load_candles(session, "Gemini", "BTCUSD", "1h")
    assert stored["volume_quote"].isna().all()  # the file's one Volume column is the base
    assert stored["volume_base"].iloc[-1] == 113.21382348
    assert stored.index[-1] == pd.Timestamp("2020-12-21 13:00", tz="UTC")


def test_stored_candles_round_trip_exactly(settings: Settings, cdd_dir: Path) -> None:
    ingest_symbol.fn("ADAUSDT", settings=settings, now=NOW)
    with session_factory(settings.sqlalchemy_url())() as session:
        stored = load_candles(session, "Binance", "ADAUSDT", "d")
    assert str(stored.index.tz) == "UTC" and len(stored) == 1164
    row = stored.loc[pd.Timestamp("2021-06-23", tz="UTC")]
    # file row: 1624406400000,...,1.15630000,1.31000000,1.10800000,1.25120000,490479573.3,...
    assert (row["open"], row["high"], row["low"], row["close"]) == (1.1563, 1.31, 1.108, 1.2512)
    assert row["volume_base"] == 490479573.3 and row["trade_count"] == 776745


def test_changed_historical_candle_is_updated_and_counted(
    settings: Settings, httpserver: HTTPServer, cdd_dir: Path
) -> None:
    body = (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()
    httpserver.expect_ordered_request("/Binance_BTCUSDT_d.csv").respond_with_data(body)
    changed = body.replace(
        b"2017-08-18,BTCUSDT,4285.08,4371.52", b"2017-08-18,BTCUSDT,4285.08,4371.99"
    )
    assert changed != body
    httpserver.expect_ordered_request("/Binance_BTCUSDT_d.csv").respond_with_data(changed)
    http = settings.model_copy(update={"cdd_base_url": httpserver.url_for("/")})
    ingest_symbol.fn("BTCUSDT", settings=http, now=NOW)
    second = ingest_symbol.fn("BTCUSDT", settings=http, now=NOW)
    assert (second.inserted, second.updated) == (0, 1)
    with session_factory(settings.sqlalchemy_url())() as session:
        high = session.scalar(
            select(Candle.high).where(Candle.open_time == datetime(2017, 8, 18, tzinfo=UTC))
        )
    assert high == 4371.99


@pytest.mark.parametrize(
    ("respond", "error", "cause"),
    [
        (
            lambda s: s.respond_with_data("<html>maintenance</html>", content_type="text/html"),
            ParseError,
            "HTML page",
        ),
        (lambda s: s.respond_with_data("", status=200), ParseError, "empty body"),
        (lambda s: s.respond_with_data("gone", status=404), FetchError, "HTTP 404"),
        (
            lambda s: s.respond_with_data(
                "unix,date,symbol,open,high,low,close,Volume BTC,Volume "
                "USDT\n1624406400000,2021-06-23,BTCUSDT,1,0.5,1,1,1,1\n"
            ),
            ValidationError,
            "high below low",
        ),
    ],
)
def test_failure_writes_no_candles_and_records_the_cause(
    settings: Settings, httpserver: HTTPServer, respond, error: type, cause: str
) -> None:
    ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)  # good data already stored
    before = count(settings.sqlalchemy_url(), Candle)
    respond(httpserver.expect_request("/Binance_BTCUSDT_d.csv"))
    http = settings.model_copy(update={"cdd_base_url": httpserver.url_for("/")})
    with pytest.raises(error, match=f"^BTCUSDT: .*{cause}"):
        ingest_symbol.fn("BTCUSDT", settings=http, now=NOW)
    assert count(settings.sqlalchemy_url(), Candle) == before
    failed = runs(settings.sqlalchemy_url())[-1]
    assert failed.status == "failed" and cause in (failed.error or "")


def test_truncated_file_in_mirror_writes_nothing(
    settings: Settings, cdd_dir: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    body = (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()
    (mirror / "Binance_BTCUSDT_d.csv").write_bytes(body[: len(body) // 2])
    with pytest.raises(ParseError, match="incomplete row: truncated file"):
        ingest_symbol.fn(
            "BTCUSDT", settings=settings.model_copy(update={"cdd_base_url": str(mirror)}), now=NOW
        )
    assert count(settings.sqlalchemy_url(), Candle) == 0


def test_open_candle_of_today_is_not_stored(settings: Settings) -> None:
    # With the clock on 2025-10-14 at noon, that day's BTC candle is still open.
    result = ingest_symbol.fn(
        "BTCUSDT", settings=settings, now=datetime(2025, 10, 14, 12, tzinfo=UTC)
    )
    assert result.dropped_open == ["2025-10-14"]
    assert result.last == datetime(2025, 10, 13, tzinfo=UTC)
    later = ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)  # the next day: now final
    assert (later.inserted, later.updated) == (1, 0)


def test_migrations_from_empty_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    assert current_revision(url) is None
    assert upgrade(url) == head_revision()
    assert {"candles", "ingest_runs"} <= set(inspect(get_engine(url)).get_table_names())
    assert upgrade(url) == head_revision()  # a second upgrade is a no-op
    get_engine(url).dispose()


@pytest.mark.postgres
def test_migrations_from_empty_postgres(postgres_url: str) -> None:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"candlecast_empty_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        assert current_revision(url) is None
        assert upgrade(url) == head_revision()
        columns = {c["name"]: c for c in inspect(get_engine(url)).get_columns("candles")}
        assert str(columns["close"]["type"]) == "DOUBLE PRECISION"
        assert str(columns["open_time"]["type"]) == "TIMESTAMP"
        assert columns["open_time"]["type"].timezone is True
    finally:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_run_left_running_by_a_dead_process_is_closed(settings: Settings) -> None:
    url = settings.sqlalchemy_url()
    with session_factory(url).begin() as session:
        session.add(
            IngestRun(exchange="Binance", symbol="BNBUSDT", timeframe="d", url="x", warnings=[])
        )  # a run whose process was killed
        session.add(
            IngestRun(exchange="Binance", symbol="ETHUSDT", timeframe="d", url="x", warnings=[])
        )  # another series: not ours to close
    ingest_symbol.fn("BNBUSDT", settings=settings, now=NOW)
    assert [(r.symbol, r.status, r.error) for r in runs(url)] == [
        ("BNBUSDT", "failed", "abandoned: its process ended before finishing"),
        ("ETHUSDT", "running", None),
        ("BNBUSDT", "success", None),
    ]
