"""Property-based tests of the CDD parser (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candlecast.core.errors import ParseError
from tasks.cdd import parse_cdd_csv

START = datetime(2017, 8, 17, tzinfo=UTC)
NEW_HEADER = "Unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USDT,tradecount"
OLD_HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount"


@st.composite
def candles(draw: st.DrawFn) -> list[tuple[int, float, float, float, float, float, int]]:
    days = draw(st.lists(st.integers(0, 3000), min_size=1, max_size=40, unique=True))
    out = []
    for day in days:
        low = draw(st.integers(1, 10**8)) / 10**4
        open_, close = (low + draw(st.integers(0, 10**6)) / 10**4 for _ in range(2))
        high = max(open_, close) + draw(st.integers(0, 10**5)) / 10**4
        volume = draw(st.integers(0, 10**9)) / 10**3
        out.append((day, open_, high, low, close, volume, draw(st.integers(0, 10**6))))
    return out


def render(day: int, o: float, h: float, lo: float, c: float, v: float, n: int, style: str) -> str:
    """One row in one of CDD's real formats."""
    moment = START + timedelta(days=day)
    ms = int(moment.timestamp() * 1000)
    if style == "current":
        return f"{ms},{moment:%Y-%m-%d},BTCUSDT,{o},{h},{lo},{c},{v},{v * c},{n}"
    if style == "older":
        prices = f"{o:.8f},{h:.8f},{lo:.8f},{c:.8f}"
        return f"{ms},{moment:%Y-%m-%d %H:%M:%S},BTC/USDT,{prices},{v},{v * c},{n}"
    seconds = f"{moment.timestamp():.1f}"  # legacy: seconds with a decimal point, NULL trades
    return f"{seconds},{moment:%Y-%m-%d},BTC/USDT,{o},{h},{lo},{c},{v},{v * c},NULL"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=candles(), data=st.data())
def test_any_order_duplication_and_mix_of_formats_gives_the_same_candles(rows, data) -> None:
    canonical = parse_cdd_csv(
        "\n".join([NEW_HEADER, *(render(*r, "current") for r in rows)]).encode(),
        symbol="BTCUSDT",
        timeframe="d",
    ).frame
    # the same candles, each in a random real format, some twice, in random order
    styles = [data.draw(st.sampled_from(["current", "older", "legacy"])) for _ in rows]
    lines = [render(*r, s) for r, s in zip(rows, styles, strict=True)]
    twice = data.draw(st.lists(st.sampled_from(range(len(rows))), max_size=5))
    lines += [render(*rows[i], "legacy") for i in twice]
    shuffled = data.draw(st.permutations(lines))
    banner = data.draw(st.booleans())
    header = data.draw(st.sampled_from([NEW_HEADER, OLD_HEADER]))
    body = ("https://www.CryptoDataDownload.com\n" if banner else "") + "\n".join(
        [header, *shuffled]
    )
    parsed = parse_cdd_csv(body.encode(), symbol="BTCUSDT", timeframe="d").frame
    prices = ["open", "high", "low", "close"]
    pd.testing.assert_index_equal(parsed.index, canonical.index)
    pd.testing.assert_frame_equal(parsed[prices], canonical[prices], check_exact=False, rtol=1e-8)
    assert len(parsed) == len(rows)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_the_parsers_own_error(content: bytes) -> None:
    try:
        frame = parse_cdd_csv(content, symbol="BTCUSDT", timeframe="d").frame
    except ParseError:
        return
    assert frame.index.is_unique  # bytes that happen to be a valid file parse correctly


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("0123456789.,-:/ \nNULLunixdateopenhighlowclose")),
        max_size=500,
    )
)
def test_csv_looking_noise_raises_only_the_parsers_own_error(text: str) -> None:
    body = f"{OLD_HEADER}\n{text}".encode()
    try:
        parse_cdd_csv(body, symbol="BTCUSDT", timeframe="d")
    except ParseError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=candles(), data=st.data())
def test_one_spoilt_field_loses_only_its_row(rows, data) -> None:
    lines = [render(*r, "current") for r in rows]
    at = data.draw(st.integers(0, len(lines) - 1))
    fields = lines[at].split(",")
    column = data.draw(st.sampled_from([0, 1, 3, 4, 5, 6, 7]))  # unix, date, prices, base volume
    fields[column] = data.draw(st.sampled_from(["", "nan", "NULL", "x", "1..2", "-", "inf"]))
    good_tail = render(3001, 1, 2, 0.5, 1.5, 1, 1, "current")  # the spoilt row is never alone
    whole, spoilt = (
        parse_cdd_csv(
            "\n".join([NEW_HEADER, *body, good_tail]).encode(), symbol="BTCUSDT", timeframe="d"
        )
        for body in (lines, [*lines[:at], ",".join(fields), *lines[at + 1 :]])
    )
    (bad,) = spoilt.bad_rows
    assert bad.row_number == at + 1 and ",".join(bad.raw.values()) == ",".join(fields)
    lost = pd.Timestamp(START + timedelta(days=rows[at][0]))
    pd.testing.assert_frame_equal(spoilt.frame, whole.frame.drop(lost))
