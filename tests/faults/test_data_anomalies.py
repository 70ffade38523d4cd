"""Data anomalies end to end: each handled by the ingestion rules, checked in the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from candlecast.errors import ValidationError
from candlecast.settings import Settings
from db.schema import Candle, IngestRun
from db.session import session_factory
from tasks.ingest import ingest_symbol

NOW = datetime(2024, 3, 20, tzinfo=UTC)
HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


def row(
    day: int, o: float = 100, h: float = 102, lo: float = 99, c: float = 101, v: float = 10
) -> str:
    moment = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=day)
    unix = int(moment.timestamp() * 1000)
    return f"{unix},{moment:%Y-%m-%d},BTC/USDT,{o},{h},{lo},{c},{v},{v * c},5"


def ingest_rows(settings: Settings, tmp_path: Path, rows: list[str]):
    mirror = tmp_path / "anomaly"
    mirror.mkdir(exist_ok=True)
    (mirror / "Binance_BTCUSDT_d.csv").write_text("\n".join([HEADER, *reversed(rows)]) + "\n")
    return ingest_symbol.fn(
        "BTCUSDT", settings=settings.model_copy(update={"cdd_base_url": str(mirror)}), now=NOW
    )


def stored(settings: Settings) -> int:
    with session_factory(settings.sqlalchemy_url())() as session:
        return session.scalar(select(func.count()).select_from(Candle)) or 0


def run_warnings(settings: Settings) -> dict[str, dict]:
    with session_factory(settings.sqlalchemy_url())() as session:
        run = session.scalars(select(IngestRun).order_by(IngestRun.id.desc())).first()
    return {w["kind"]: w for w in run.warnings}


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


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        (row(2, h=98, lo=99), "high below low"),
        (row(2, v=-1), "negative volume"),
        (row(2, lo=0), "non-positive price"),
        (row(40), "candle in the future"),
    ],
)
def test_hard_anomaly_rejects_the_file_and_stores_nothing(
    settings: Settings, tmp_path: Path, bad: str, cause: str
) -> None:
    ingest_rows(settings, tmp_path, [row(0), row(1)])
    with pytest.raises(ValidationError, match=f"^BTCUSDT: {cause}"):
        ingest_rows(settings, tmp_path, [row(0), row(1, c=100.5), bad, row(3)])
    assert stored(settings) == 2
    with session_factory(settings.sqlalchemy_url())() as session:
        close = session.scalar(
            select(Candle.close).where(Candle.open_time == datetime(2024, 3, 2, tzinfo=UTC))
        )
    assert close == 101  # the changed candle in the rejected file was not applied
