"""Validation rules with hand-built candles and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from candlecast.core.errors import ValidationError
from tasks.cdd import ParsedCandles, parse_cdd_csv
from tasks.validate import MAX_BAD_ROWS, bad_row_limit, quarantine, validate_candles

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)  # mid-day: the 2024-03-10 candle is still open


def candles(
    days: list[str], close: list[float] | None = None, **overrides: list[float]
) -> pd.DataFrame:
    close = close or [100.0 + i for i in range(len(days))]
    frame = pd.DataFrame(
        {
            "open": close,
            "high": [c * 1.01 for c in close],
            "low": [c * 0.99 for c in close],
            "close": close,
            "volume_base": [50.0] * len(days),
            "volume_quote": [5000.0] * len(days),
            "trade_count": pd.array([10] * len(days), dtype="Int64"),
        },
        index=pd.DatetimeIndex(pd.to_datetime(days, utc=True), name="open_time"),
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def days(start: str, count: int) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=count, freq="D")]


def test_current_utc_day_is_dropped_by_the_clock_rule() -> None:
    frame = candles(days("2024-03-01", 10))  # 03-01 .. 03-10
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    assert result.frame.index[-1] == pd.Timestamp("2024-03-09", tz="UTC")
    assert result.dropped_open == ["2024-03-10"]
    assert [w["kind"] for w in result.warnings] == ["open_candle"]


def test_candle_whose_day_just_ended_is_final() -> None:
    frame = candles(days("2024-03-01", 10))
    result = validate_candles(
        frame, symbol="BTCUSDT", timeframe="d", now=datetime(2024, 3, 11, tzinfo=UTC)
    )
    assert len(result.frame) == 10 and result.dropped_open == []


def test_low_volume_newest_candle_is_dropped_as_probably_open() -> None:
    volumes = [50.0] * 8 + [5.0]  # 10% of the median
    frame = candles(days("2024-03-01", 9), volume_base=volumes)
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    assert result.frame.index[-1] == pd.Timestamp("2024-03-08", tz="UTC")
    assert result.dropped_open == ["2024-03-09"]
    assert result.warnings[0]["kind"] == "probably_open"


def test_normal_low_volume_newest_candle_is_kept() -> None:
    frame = candles(days("2024-03-01", 9), volume_base=[50.0] * 8 + [10.0])  # 20%: kept
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    assert len(result.frame) == 9 and result.warnings == []


def test_missing_days_are_listed() -> None:
    frame = candles(["2024-03-01", "2024-03-02", "2024-03-05", "2024-03-06"])
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    assert result.missing == ["2024-03-03", "2024-03-04"]
    assert result.warnings[0]["kind"] == "missing" and result.warnings[0]["count"] == 2


def test_tenfold_jump_is_a_warning_not_an_error() -> None:
    frame = candles(days("2024-03-01", 4), close=[100.0, 101.0, 1010.0, 1000.0])
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    jumps = [w for w in result.warnings if w["kind"] == "jump"]
    assert jumps and jumps[0]["periods"] == ["2024-03-03"]
    assert len(result.frame) == 4


@pytest.mark.parametrize(
    ("overrides", "cause"),
    [
        ({"low": [99.0, 0.0, 101.0]}, "non-positive price"),
        ({"close": [100.0, -1.0, 102.0]}, "non-positive price"),
        ({"high": [101.0, 90.0, 103.0], "low": [99.0, 95.0, 101.0]}, "high below low"),
        ({"high": [101.0, 100.5, 103.0]}, "high below open or close"),
        ({"low": [99.0, 101.5, 101.0]}, "low above open or close"),
        ({"volume_base": [1.0, -2.0, 1.0]}, "negative volume"),
        ({"volume_quote": [1.0, -0.5, 1.0]}, "negative volume"),
    ],
)
def test_an_impossible_candle_is_left_out_and_its_day_missing(
    overrides: dict[str, list[float]], cause: str
) -> None:
    frame = candles(days("2024-03-01", 3), **overrides)
    result = validate_candles(frame, symbol="ETHUSDT", timeframe="d", now=NOW)
    assert result.impossible.to_dict() == {pd.Timestamp("2024-03-02", tz="UTC"): cause}
    assert list(result.frame.index.day) == [1, 3]
    assert result.missing == ["2024-03-02"]


def test_a_missing_quote_volume_is_possible() -> None:
    frame = candles(days("2024-03-01", 3), volume_quote=[1.0, float("nan"), 1.0])
    result = validate_candles(frame, symbol="ETHUSDT", timeframe="d", now=NOW)
    assert result.impossible.empty and len(result.frame) == 3


def test_candle_in_the_future_is_rejected() -> None:
    frame = candles(days("2024-03-09", 3))  # 03-11 starts after NOW
    with pytest.raises(ValidationError, match="^BTCUSDT: candle in the future at 2024-03-11"):
        validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)


def test_hourly_open_candle_and_missing_hours() -> None:
    index = ["2024-03-10 08:00", "2024-03-10 09:00", "2024-03-10 11:00", "2024-03-10 12:00"]
    frame = candles(index)
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="1h", now=NOW)
    assert result.dropped_open == ["2024-03-10 12:00"]
    assert result.missing == ["2024-03-10 10:00"]


@pytest.mark.parametrize(
    ("rows", "share", "limit"),
    [(3, 0.01, 1), (336, 0.01, 3), (45_000, 0.01, MAX_BAD_ROWS), (300, 0.0, 0), (300, 0.5, 100)],
)
def test_bad_row_limit(rows: int, share: float, limit: int) -> None:
    assert bad_row_limit(rows, share) == limit


HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


def file_of(days_: int, bad: dict[int, str]) -> ParsedCandles:
    """A daily file from 2023-01-01, oldest row first; ``bad`` replaces the prices of rows."""
    lines = [HEADER]
    for day in range(days_):
        moment = pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=day)
        prices = bad.get(day, "100,102,99,101")
        lines.append(f"{int(moment.timestamp() * 1000)},{moment:%Y-%m-%d},BTCUSDT,{prices},1,1,1")
    return parse_cdd_csv("\n".join(lines).encode(), symbol="BTCUSDT", timeframe="d")


def quarantined(parsed: ParsedCandles, share: float = 0.01):
    checked = validate_candles(parsed.frame, symbol="BTCUSDT", timeframe="d", now=NOW)
    return quarantine(parsed, checked, symbol="BTCUSDT", timeframe="d", max_share=share)


def test_quarantine_lists_unreadable_and_impossible_rows_in_file_order() -> None:
    parsed = file_of(30, {3: "0.0,245.0,0.0,245.0", 9: "100,102,99,oops"})
    bad, (warning,) = quarantined(parsed, share=0.1)
    assert [(b.row_number, b.reason) for b in bad] == [
        (4, "non-positive price"),
        (10, "unparseable value 'oops' in column 'close'"),
    ]
    assert bad[0].raw["open"] == "0.0" and bad[0].open_time == datetime(2023, 1, 4, tzinfo=UTC)
    assert (warning["kind"], warning["count"]) == ("quarantined", 2)
    assert warning["periods"] == ["2023-01-04", "2023-01-10"]
    assert "row 4 (2023-01-04): non-positive price" in str(warning["message"])


def test_a_file_without_bad_rows_quarantines_nothing() -> None:
    assert quarantined(file_of(5, {})) == ([], [])


def test_one_bad_row_is_tolerated_in_a_short_file() -> None:
    bad, _ = quarantined(file_of(5, {2: "100,98,99,101"}))
    assert [b.reason for b in bad] == ["high below low"]


def test_more_bad_rows_than_the_share_refuse_the_file() -> None:
    parsed = file_of(150, {10: "100,98,99,101", 20: "0,1,0,1"})  # 2 bad, 1 allowed
    with pytest.raises(ValidationError) as info:
        quarantined(parsed)
    assert str(info.value) == (
        "BTCUSDT: 2 of 150 rows are bad, more than the 1 a file may have "
        "(CANDLECAST_MAX_BAD_ROW_SHARE); the first is row 11 (2023-01-11): high below low "
        "[1673395200000,2023-01-11,BTCUSDT,100,98,99,101,1,1,1]; nothing was stored"
    )
    assert quarantined(parsed, share=0.02)[0]  # a looser share stores the same file


def test_a_file_of_only_bad_rows_is_refused() -> None:
    with pytest.raises(ValidationError, match="^BTCUSDT: every row is bad; the first is row 1"):
        quarantined(file_of(1, {0: "100,98,99,101"}))
