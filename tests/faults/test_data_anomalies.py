"""Data anomalies end to end: each handled by the ingestion rules, checked in the database.

Each test here is a row of README's fault table on bad data (SQLite and PostgreSQL).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from candlecast.core.errors import ParseError, ValidationError
from candlecast.core.settings import Settings
from db.schema import Candle, IngestRun, RejectedCandle
from db.session import session_factory
from tasks.ingest import IngestResult, ingest_symbol

NOW = datetime(2024, 3, 20, tzinfo=UTC)
HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


def row(
    day: int, o: float = 100, h: float = 102, lo: float = 99, c: float = 101, v: float = 10
) -> str:
    moment = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=day)
    unix = int(moment.timestamp() * 1000)
    return f"{unix},{moment:%Y-%m-%d},BTC/USDT,{o},{h},{lo},{c},{v},{v * c},5"


def ingest_rows(settings: Settings, tmp_path: Path, rows: list[str]) -> IngestResult:
    mirror = tmp_path / "anomaly"
    mirror.mkdir(exist_ok=True)
    (mirror / "Binance_BTCUSDT_d.csv").write_text("\n".join([HEADER, *reversed(rows)]) + "\n")
    return ingest_symbol.fn(
        "BTCUSDT", settings=settings.model_copy(update={"cdd_base_url": str(mirror)}), now=NOW
    )


def stored(settings: Settings, model: type = Candle) -> int:
    with session_factory(settings.sqlalchemy_url())() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def last_run(settings: Settings) -> IngestRun:
    with session_factory(settings.sqlalchemy_url())() as session:
        return session.scalars(select(IngestRun).order_by(IngestRun.id.desc())).first()


def run_warnings(settings: Settings) -> dict[str, dict]:
    return {w["kind"]: w for w in last_run(settings).warnings}


def rejected(settings: Settings) -> list[RejectedCandle]:
    with session_factory(settings.sqlalchemy_url())() as session:
        return list(session.scalars(select(RejectedCandle).order_by(RejectedCandle.id)))


def test_duplicate_days_keep_one_each(settings: Settings, tmp_path: Path) -> None:
    result = ingest_rows(settings, tmp_path, [row(0), row(1), row(1, c=101.5), row(2)])
    assert result.inserted == 3 and stored(settings) == 3
    assert run_warnings(settings)["duplicates"]["count"] == 1


def test_gaps_are_listed_and_stored_candles_stay_honest(settings: Settings, tmp_path: Path) -> None:
    result = ingest_rows(settings, tmp_path, [row(0), row(1), row(4), row(5)])
    assert result.missing == ["2024-03-03", "2024-03-04"] and stored(settings) == 4
    assert run_warnings(settings)["missing"]["periods"] == ["2024-03-03", "2024-03-04"]


def test_tenfold_jump_is_stored_with_a_warning(settings: Settings, tmp_path: Path) -> None:
    rows = [
        row(0),
        row(1),
        row(2, o=101, h=1011, lo=100, c=1010),
        row(3, o=1010, h=1012, lo=1000, c=1005),
    ]
    result = ingest_rows(settings, tmp_path, rows)
    assert result.inserted == 4
    assert run_warnings(settings)["jump"]["periods"] == ["2024-03-03"]


BAD_ROWS = [
    (row(2, h=98, lo=99), "high below low"),
    (row(2, h=100.5), "high below open or close"),
    (row(2, lo=100.5), "low above open or close"),
    (row(2, v=-1), "negative volume"),
    (row(2, o=0.0, h=245.0, lo=0.0, c=245.0), "non-positive price"),
    (row(2).replace(",101,", ",abc,"), "unparseable value 'abc' in column 'close'"),
    (row(2).replace(",100,", ",nan,"), "missing value in column 'open'"),
    (row(2).replace("2024-03-03", "03/03/2024 noon"), "unparseable value '03/03/2024 noon'"),
]


@pytest.mark.parametrize(("bad", "cause"), BAD_ROWS, ids=[b[1][:24] for b in BAD_ROWS])
def test_a_bad_row_is_quarantined_and_the_rest_stored(
    settings: Settings, tmp_path: Path, bad: str, cause: str
) -> None:
    result = ingest_rows(settings, tmp_path, [row(0), row(1), bad, row(3)])
    assert (result.inserted, result.quarantined, stored(settings)) == (3, 1, 3)
    assert result.missing == ["2024-03-03"] and last_run(settings).missing_count == 1
    (quarantined,) = rejected(settings)
    assert cause in quarantined.reason
    assert quarantined.raw == dict(zip(HEADER.split(","), bad.split(","), strict=True))
    assert (quarantined.row_number, quarantined.open_time) == (2, datetime(2024, 3, 3, tzinfo=UTC))
    assert quarantined.ingest_run_id == result.run_id and quarantined.symbol == "BTCUSDT"
    assert run_warnings(settings)["quarantined"]["periods"] == ["2024-03-03"]


def test_a_missing_quote_volume_is_stored_as_null(settings: Settings, tmp_path: Path) -> None:
    no_quote = row(2).replace(",1010,", ",nan,")
    result = ingest_rows(settings, tmp_path, [row(0), row(1), no_quote, row(3)])
    assert (result.inserted, result.quarantined, result.missing) == (4, 0, [])
    with session_factory(settings.sqlalchemy_url())() as session:
        volumes = session.execute(
            select(Candle.volume_base, Candle.volume_quote).where(
                Candle.open_time == datetime(2024, 3, 3, tzinfo=UTC)
            )
        ).one()
    assert tuple(volumes) == (10.0, None)  # NULL, not PostgreSQL's NaN
    assert run_warnings(settings)["null_volume"]["periods"] == ["2024-03-03"]
    again = ingest_rows(settings, tmp_path, [row(0), row(1), no_quote, row(3)])
    assert (again.inserted, again.updated) == (0, 0)  # NULL equals NULL: nothing rewritten


def test_reingesting_a_file_with_a_bad_row_keeps_one_rejected_row(
    settings: Settings, tmp_path: Path
) -> None:
    bad = row(2, lo=0)
    ingest_rows(settings, tmp_path, [row(0), row(1), bad, row(3)])
    again = ingest_rows(settings, tmp_path, [row(0), row(1), bad, row(3)])
    assert (again.inserted, again.updated) == (0, 0)
    assert [r.ingest_run_id for r in rejected(settings)] == [again.run_id]
    fixed = ingest_rows(settings, tmp_path, [row(0), row(1), row(2), row(3)])
    assert fixed.inserted == 1 and rejected(settings) == []  # corrected by CDD: out of quarantine


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ([row(2, h=98, lo=99), row(3, lo=0)], "2 of 5 rows are bad, more than the 1"),
        ([row(2), row(40)], "candle in the future at 2024-04-10"),
    ],
)
def test_a_file_with_too_many_bad_rows_or_a_future_candle_stores_nothing(
    settings: Settings, tmp_path: Path, bad: list[str], cause: str
) -> None:
    ingest_rows(settings, tmp_path, [row(0), row(1)])
    with pytest.raises(ValidationError, match=f"^BTCUSDT: {cause}"):
        ingest_rows(settings, tmp_path, [row(0), row(1, c=100.5), *bad, row(4)])
    assert stored(settings) == 2 and stored(settings, RejectedCandle) == 0
    with session_factory(settings.sqlalchemy_url())() as session:
        close = session.scalar(
            select(Candle.close).where(Candle.open_time == datetime(2024, 3, 2, tzinfo=UTC))
        )
    assert close == 101  # the changed candle in the rejected file was not applied
    assert last_run(settings).status == "failed"


def test_a_truncated_last_row_refuses_the_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(
        ParseError,
        match="^BTCUSDT: row 3 has 5 fields, the header 10 .incomplete row: truncated file",
    ):
        ingest_rows(settings, tmp_path, [row(0)[:40], row(1), row(2)])  # the last line is cut
    assert stored(settings) == 0 and stored(settings, RejectedCandle) == 0


def test_each_data_warning_is_logged_at_warning_level(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [row(0), row(1), row(1, c=101.5), row(3, lo=0), row(4).replace(",1010,", ",nan,")]
    with caplog.at_level(logging.INFO, logger="candlecast"):
        result = ingest_rows(settings, tmp_path, [*rows, row(5)])
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "candlecast"}
    kinds = ["duplicates", "missing", "null_volume", "quarantined"]
    assert sorted(w["kind"] for w in result.warnings) == kinds
    for warning in result.warnings:
        assert levels[f"BTCUSDT: {warning['message']}"] == logging.WARNING
    assert levels[result.line()] == logging.INFO
