"""Validation rules with hand-built candles and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from candlecast.errors import ValidationError
from tasks.validate import validate_candles

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
        ({"low": [99.0, 0.0, 101.0]}, "non-positive price in the candle of 2024-03-02"),
        ({"close": [100.0, -1.0, 102.0]}, "non-positive price"),
        ({"high": [101.0, 90.0, 103.0], "low": [99.0, 95.0, 101.0]}, "high below low"),
        ({"high": [101.0, 100.5, 103.0]}, "high below open or close"),
        ({"low": [99.0, 101.5, 101.0]}, "low above open or close"),
        ({"volume_base": [1.0, -2.0, 1.0]}, "negative volume"),
        ({"volume_quote": [1.0, 1.0, -0.5]}, "negative volume in the candle of 2024-03-03"),
    ],
)
def test_hard_rules_reject_the_file(overrides: dict[str, list[float]], cause: str) -> None:
    frame = candles(days("2024-03-01", 3), **overrides)
    with pytest.raises(ValidationError, match=cause) as info:
        validate_candles(frame, symbol="ETHUSDT", timeframe="d", now=NOW)
    assert str(info.value).startswith("ETHUSDT: ")


def test_candle_in_the_future_is_rejected() -> None:
    frame = candles(days("2024-03-09", 3))  # 03-11 starts after NOW
    with pytest.raises(ValidationError, match="candle in the future .*2024-03-11"):
        validate_candles(frame, symbol="BTCUSDT", timeframe="d", now=NOW)


def test_hourly_open_candle_and_missing_hours() -> None:
    index = ["2024-03-10 08:00", "2024-03-10 09:00", "2024-03-10 11:00", "2024-03-10 12:00"]
    frame = candles(index)
    result = validate_candles(frame, symbol="BTCUSDT", timeframe="1h", now=NOW)
    assert result.dropped_open == ["2024-03-10 12:00"]
    assert result.missing == ["2024-03-10 10:00"]
