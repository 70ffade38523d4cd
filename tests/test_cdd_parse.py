"""The CDD parser on every real file and on hand-made malformed input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from candlecast.core.errors import ParseError
from tasks.cdd import parse_cdd_csv

# (file, symbol, timeframe, rows in the file, distinct candles, first, last) from data/README.md
REAL_FILES = [
    ("Binance_BTCUSDT_d.csv", "BTCUSDT", "d", 2981, 2981, "2017-08-17", "2025-10-14"),
    ("Binance_ETHUSDT_d.csv", "ETHUSDT", "d", 1409, 1408, "2017-08-17", "2021-06-24"),
    ("Binance_ADAUSDT_d.csv", "ADAUSDT", "d", 1165, 1165, "2018-04-17", "2021-06-24"),
    ("Binance_BNBUSDT_d.csv", "BNBUSDT", "d", 1272, 1272, "2017-12-18", "2021-06-11"),
    ("Binance_BTCUSDT_1h.csv", "BTCUSDT", "1h", 36062, 33413, "2017-08-17 04:00", "2021-06-10"),
    ("Binance_ETHUSDT_1h.csv", "ETHUSDT", "1h", 336, 336, "2019-10-31", "2019-11-13 23:00"),
    ("Gemini_BTCUSD_1h.csv", "BTCUSD", "1h", 326, 326, "2020-12-08", "2020-12-21 13:00"),
]

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


@pytest.mark.parametrize(("name", "symbol", "tf", "rows", "distinct", "first", "last"), REAL_FILES)
def test_real_files_parse_to_their_distinct_candles(
    cdd_dir: Path, name: str, symbol: str, tf: str, rows: int, distinct: int, first: str, last: str
) -> None:
    parsed = parse_cdd_csv((cdd_dir / name).read_bytes(), symbol=symbol, timeframe=tf)
    frame = parsed.frame
    assert parsed.rows_read == rows
    assert len(frame) == distinct
    assert parsed.duplicates_resolved == rows - distinct
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert frame.index[0] == pd.Timestamp(first, tz="UTC")
    assert frame.index[-1] == pd.Timestamp(last, tz="UTC")
    assert list(frame.columns) == [
        "open",
        "high",
        "low",
        "close",
        "volume_base",
        "volume_quote",
        "trade_count",
    ]


def test_btc_daily_newest_row_values_exact(cdd_dir: Path) -> None:
    frame = parse_cdd_csv(
        (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes(), symbol="BTCUSDT", timeframe="d"
    ).frame
    row = frame.loc[pd.Timestamp("2025-10-14", tz="UTC")]
    assert (row["open"], row["high"], row["low"], row["close"]) == (
        115166.0,
        115409.96,
        109866.0,
        113028.14,
    )
    assert row["volume_base"] == 31870.32974  # 'Volume BTC', the base currency
    assert row["volume_quote"] == 3578140778.8084984
    assert row["trade_count"] == 7425642


def test_duplicate_across_format_change_keeps_newer_format_row(cdd_dir: Path) -> None:
    parsed = parse_cdd_csv(
        (cdd_dir / "Binance_ETHUSDT_d.csv").read_bytes(), symbol="ETHUSDT", timeframe="d"
    )
    row = parsed.frame.loc[pd.Timestamp("2017-12-18", tz="UTC")]
    # The ms/"00:00:00" row says open 707.62 with 40460 trades; the legacy row 707.64, NULL.
    assert row["open"] == 707.62
    assert row["trade_count"] == 40460
    assert [w["kind"] for w in parsed.warnings] == ["duplicates"]


def test_legacy_rows_in_seconds_with_null_tradecount(cdd_dir: Path) -> None:
    frame = parse_cdd_csv(
        (cdd_dir / "Binance_ETHUSDT_d.csv").read_bytes(), symbol="ETHUSDT", timeframe="d"
    ).frame
    first = frame.iloc[0]
    assert frame.index[0] == pd.Timestamp(datetime(2017, 8, 17, tzinfo=UTC))
    assert (first["open"], first["close"]) == (303.61, 302.0)
    assert pd.isna(first["trade_count"])


def test_hourly_am_pm_dates_and_precision(cdd_dir: Path) -> None:
    frame = parse_cdd_csv(
        (cdd_dir / "Binance_BTCUSDT_1h.csv").read_bytes(), symbol="BTCUSDT", timeframe="1h"
    ).frame
    # legacy row "1502946000.0,2017-08-17 05-AM": 05:00 UTC
    assert frame.loc[pd.Timestamp("2017-08-17 05:00", tz="UTC"), "close"] == 4315.32


def test_small_prices_keep_every_digit() -> None:
    body = "\n".join(
        [
            "unix,date,symbol,open,high,low,close,Volume XRP,Volume BTC,tradecount",
            "1624406400000,2021-06-23 00:00:00,XRP/BTC,0.00020850,0.00020851,0.00020849,0.00020850,"
            "12.5,0.0026,3",
        ]
    ).encode()
    frame = parse_cdd_csv(body, symbol="XRPBTC", timeframe="d").frame
    assert frame["open"].iloc[0] == 0.00020850
    assert f"{frame['high'].iloc[0]:.8f}" == "0.00020851"


def test_header_without_banner_and_upper_case_header() -> None:
    lower = f"{HEADER}\n1624406400000,2021-06-23 00:00:00,BTC/USDT,1,2,0.5,1.5,10,15,7\n"
    upper = (
        "https://www.CryptoDataDownload.com\n"
        "Unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT,tradecount\n"
        "1624406400000,2021-06-23,BTCUSDT,1,2,0.5,1.5,10,15,7\n"
    )
    a = parse_cdd_csv(lower.encode(), symbol="BTCUSDT", timeframe="d").frame
    b = parse_cdd_csv(upper.encode(), symbol="BTCUSDT", timeframe="d").frame
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("volumes", "row", "symbol"),
    [
        ("Volume USDT,Volume BTC,tradecount", "1624406400000,2021-06-23,BTCUSDT", "BTCUSDT"),
        ("Volume USD,Volume BTC", "1624406400,2021-06-23 00:00:00,BTC/USD", "BTCUSD"),  # Bitstamp
    ],
)
def test_volumes_mapped_by_name_not_position(volumes: str, row: str, symbol: str) -> None:
    trades = ",7" if "tradecount" in volumes else ""
    swapped = f"unix,date,symbol,open,high,low,close,{volumes}\n{row},1,2,0.5,1.5,15,10{trades}\n"
    frame = parse_cdd_csv(swapped.encode(), symbol=symbol, timeframe="d").frame
    assert (frame["volume_base"].iloc[0], frame["volume_quote"].iloc[0]) == (10.0, 15.0)


GOOD_ROW = "1624406400000,2021-06-23 00:00:00,BTC/USDT,1,2,0.5,1.5,10,15,7"


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"", "empty body"),
        (b"   \n", "empty body"),
        (b"<!DOCTYPE html><html><body>Cloudflare</body></html>", "HTML page"),
        (b"<html><head></head></html>", "HTML page"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"hello,world\n1,2\n", "no CDD header"),
        (f"{HEADER}\n".encode(), "no candle rows"),
        (
            b"unix,date,symbol,open,high,low,Volume BTC,Volume USDT\n1,2,3,4,5,6,7,8\n",
            "missing columns: close",
        ),
        (f"{HEADER.replace(',Volume USDT', '')}\n{GOOD_ROW[:-3]}\n".encode(), "missing columns"),
        (f"{HEADER}\n{GOOD_ROW.replace(',1.5,', ',abc,')}\n".encode(), "unparseable value 'abc'"),
        (f"{HEADER}\n{GOOD_ROW.replace('1624406400000', 'soon')}\n".encode(), "column 'unix'"),
        (
            f"{HEADER}\n{GOOD_ROW.replace('2021-06-23 00:00:00', '23/06/21 x')}\n".encode(),
            "column 'date'",
        ),
        (f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW[:30]}".encode(), "row 2 has 2 fields.*truncated"),
        (f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW[:-1]}".encode(), "row 2: .*empty field.*truncated"),
        (f"{HEADER}\n{GOOD_ROW[:-2]}\n{GOOD_ROW}\n".encode(), "row 1 has 9 fields.*truncated"),
        (f"{HEADER}\n{GOOD_ROW},1\n".encode(), "row 1 has 11 fields, the header 10$"),
        (f"{HEADER}\n{GOOD_ROW.replace('BTC/USDT', 'ETH/USDT')}\n".encode(), "holds ETHUSDT"),
        (
            f"{HEADER}\n{GOOD_ROW.replace('1624406400000', '1624406460000')}\n".encode(),
            "not on a d boundary",
        ),
    ],
)
def test_malformed_input_raises_parse_error_naming_the_cause(body: bytes, cause: str) -> None:
    with pytest.raises(ParseError, match=cause) as info:
        parse_cdd_csv(body, symbol="BTCUSDT", timeframe="d")
    assert str(info.value).startswith("BTCUSDT: ")


JUNE_22 = "1624320000000,2021-06-22,BTC/USDT,1,2,0.5,1.5,10,15,7"
JUNE_25 = "1624579200000,2021-06-25,BTC/USDT,1,2,0.5,1.5,10,15,7"


def rows(*middle: str) -> bytes:
    """A file of the ``middle`` rows between two good days, 2021-06-22 and 2021-06-25."""
    return "\n".join([HEADER, JUNE_22, *middle, JUNE_25]).encode()


MIDDLE = "1624406400000,2021-06-23,BTC/USDT,1,2,0.5,1.5,10,15,7"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (MIDDLE.replace(",1.5,", ",,"), "missing value in column 'close'"),
        (MIDDLE.replace(",1.5,", ",nan,"), "missing value in column 'close'"),
        (MIDDLE.replace(",1.5,", ",abc,"), "unparseable value 'abc' in column 'close'"),
        (MIDDLE.replace(",2,", ",inf,"), "unparseable value 'inf' in column 'high'"),
        (MIDDLE.replace(",10,", ",NULL,"), "missing value in column 'volume_base'"),
        (MIDDLE.replace(",15,", ",1.2.3,"), "unparseable value '1.2.3' in column 'volume_quote'"),
        (MIDDLE.replace(",7", ",seven"), "unparseable value 'seven' in column 'trade_count'"),
        (MIDDLE.replace("2021-06-23", "23/06/21 x"), "unparseable value '23/06/21 x' in column"),
        (MIDDLE.replace("1624406400000", "1624406460000"), "not on a d boundary"),
        (MIDDLE.replace("1624406400000", "99999999999999999"), "Unix time '99999999999999999'"),
    ],
)
def test_a_bad_row_is_left_out_with_its_reason_and_raw_fields(row: str, reason: str) -> None:
    parsed = parse_cdd_csv(rows(row), symbol="BTCUSDT", timeframe="d")
    (bad,) = parsed.bad_rows
    assert bad.row_number == 2 and reason in bad.reason
    assert list(bad.raw) == HEADER.split(",") and ",".join(bad.raw.values()) == row
    assert list(parsed.frame.index.day) == [22, 25]  # the good rows around it are all there
    assert parsed.rows_read == 3


def test_a_bad_rows_time_is_kept_where_it_can_be_read() -> None:
    unreadable_unix = MIDDLE.replace("1624406400000", "soon")
    parsed = parse_cdd_csv(
        rows(MIDDLE.replace(",1.5,", ",,"), unreadable_unix), symbol="BTCUSDT", timeframe="d"
    )
    times = [bad.open_time for bad in parsed.bad_rows]
    assert times == [datetime(2021, 6, 23, tzinfo=UTC), None]


def test_a_missing_quote_volume_is_nan_with_a_warning() -> None:
    parsed = parse_cdd_csv(rows(MIDDLE.replace(",15,", ",nan,")), symbol="BTCUSDT", timeframe="d")
    assert parsed.bad_rows == []
    candle = parsed.frame.loc[pd.Timestamp("2021-06-23", tz="UTC")]
    assert pd.isna(candle["volume_quote"]) and candle["volume_base"] == 10.0
    (warning,) = parsed.warnings
    assert (warning["kind"], warning["count"], warning["periods"]) == (
        "null_volume",
        1,
        ["2021-06-23"],
    )


def test_no_readable_row_refuses_the_file() -> None:
    body = rows().replace(b",1.5,", b",x,")
    with pytest.raises(ParseError, match="no readable candle row; row 1: unparseable value 'x'"):
        parse_cdd_csv(body, symbol="BTCUSDT", timeframe="d")


GEMINI_HEADER = "Unix Timestamp,Date,Symbol,Open,High,Low,Close,Volume"


@pytest.mark.parametrize("unix", ["1609369200", "1609369200000"])
def test_one_volume_column_is_the_base_volume_and_no_quote_volume(unix: str) -> None:
    body = (
        "Created on 12-30-2020,https://www.CryptoDataDownload.com\n"
        f"{GEMINI_HEADER}\n{unix},2020-12-30 23:00:00,BTCUSD,28700.0,28911.52,28630.0,28875.54,"
        "61.1\n"
    )
    parsed = parse_cdd_csv(body.encode(), symbol="BTCUSD", timeframe="1h")
    candle = parsed.frame.loc[pd.Timestamp("2020-12-30 23:00", tz="UTC")]
    assert (candle["close"], candle["volume_base"]) == (28875.54, 61.1)
    assert pd.isna(candle["volume_quote"]) and pd.isna(candle["trade_count"])
    assert parsed.warnings == []  # no quote volume in the layout is no news row by row


def test_gemini_file_reads_every_row(cdd_dir: Path) -> None:
    parsed = parse_cdd_csv(
        (cdd_dir / "Gemini_BTCUSD_1h.csv").read_bytes(), symbol="BTCUSD", timeframe="1h"
    )
    newest = parsed.frame.iloc[-1]
    # file row: 1608555600000,2020-12-21 13:00:00,BTCUSD,22307.5,22665.35,22251.23,22646.53,...
    assert (newest["open"], newest["close"], newest["volume_base"]) == (
        22307.5,
        22646.53,
        113.21382348,
    )
    assert parsed.frame["volume_quote"].isna().all() and parsed.bad_rows == []


def test_eth_hourly_file_quarantines_its_zero_price_row(cdd_dir: Path) -> None:
    parsed = parse_cdd_csv(
        (cdd_dir / "Binance_ETHUSDT_1h.csv").read_bytes(), symbol="ETHUSDT", timeframe="1h"
    )
    nan_row = parsed.frame.loc[pd.Timestamp("2019-11-07 03:00", tz="UTC")]
    assert pd.isna(nan_row["volume_quote"]) and nan_row["volume_base"] == 47422.8856
    assert [w["kind"] for w in parsed.warnings] == ["null_volume"]
    # the zero-price row reads as numbers: the validator, not the parser, rejects it
    assert parsed.bad_rows == [] and len(parsed.frame) == 336
