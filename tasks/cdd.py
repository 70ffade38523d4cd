"""Reading CryptoDataDownload (CDD) candle CSV files, in every variant CDD has served.

Variants handled (see ``shared/data/cryptodatadownload/README.md``): a banner line above the
header or none; header case (``unix``/``Unix``); Unix time in milliseconds and in seconds
(also written ``1502928000.0``) within one file; dates as ``YYYY-MM-DD``,
``YYYY-MM-DD HH:MM:SS`` and ``YYYY-MM-DD 05-AM``; newest row first; ``NULL`` trade counts;
volume columns named after the currency; the same candle twice across a format change.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from candlecast.errors import ParseError
from candlecast.identifiers import period

PRICE_COLUMNS = ["open", "high", "low", "close"]
CANDLE_COLUMNS = [*PRICE_COLUMNS, "volume_base", "volume_quote", "trade_count"]
_MS_THRESHOLD = 100_000_000_000  # Unix values above this are milliseconds (after 1973 in ms)
_AM_PM = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2})-(AM|PM)$", re.IGNORECASE)
_NULLS = {"", "NULL", "null", "NaN", "nan", "None"}


@dataclass
class ParsedCandles:
    """Candles read from one CDD file, oldest first, one row per period."""

    frame: pd.DataFrame
    rows_read: int
    duplicates_resolved: int = 0
    warnings: list[dict[str, object]] = field(default_factory=list)


def parse_cdd_csv(content: bytes, *, symbol: str, timeframe: str) -> ParsedCandles:
    """Parse the body of a CDD CSV file into a candle frame.

    Parameters
    ----------
    content:
        The raw bytes as downloaded.
    symbol:
        The pair asked for (``BTCUSDT``); the file's own symbol column must agree.
    timeframe:
        ``d`` or ``1h``; every open time must fall on a period boundary.

    Returns
    -------
    ParsedCandles
        ``frame`` is indexed by the UTC ``open_time`` (ascending, unique) with float64
        ``open, high, low, close, volume_base, volume_quote`` and a nullable ``trade_count``.

    Raises
    ------
    ParseError
        For anything that is not a complete CDD candle file: HTML, empty or truncated bodies,
        missing columns, unparseable numbers or dates, another symbol, misaligned times.
    """
    text = _decode(content, symbol)
    raw = _read_table(text, symbol)
    columns = _map_columns(raw.columns, symbol)
    table = raw.rename(columns=columns)[list(columns.values())]
    _check_symbol_column(table, symbol)
    warnings: list[dict[str, object]] = []
    open_time, newer_format = _open_times(table, symbol, timeframe, warnings)
    frame = pd.DataFrame(
        {name: _numbers(table, name, symbol) for name in CANDLE_COLUMNS if name != "trade_count"}
    )
    frame["trade_count"] = _trade_counts(table, symbol)
    frame["open_time"] = open_time
    frame["_newer"] = newer_format
    frame["_row"] = np.arange(len(frame))
    # Keep one row per period: the newer-format row, else the one nearer the top of the file.
    frame = frame.sort_values(["open_time", "_newer", "_row"], ascending=[True, False, True])
    duplicated = frame.duplicated("open_time", keep="first")
    frame = frame.loc[~duplicated].drop(columns=["_newer", "_row"]).set_index("open_time")
    repeats = int(duplicated.sum())
    if repeats:
        what = "1 candle appeared twice" if repeats == 1 else f"{repeats} candles appeared twice"
        warnings.append(
            {
                "kind": "duplicates",
                "count": repeats,
                "message": f"{what}; kept one of each (the newer-format row)",
            }
        )
    return ParsedCandles(frame, len(table), repeats, warnings)


def _decode(content: bytes, symbol: str) -> str:
    if not content or not content.strip():
        raise ParseError(symbol, "empty body: no CSV received")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(symbol, f"body is not UTF-8 text (byte {exc.start})") from None
    head = text.lstrip()[:512].lower()
    if head.startswith("<") or "<html" in head or "<!doctype" in head:
        raise ParseError(symbol, "received an HTML page, not a CDD CSV file")
    return text


def _read_table(text: str, symbol: str) -> pd.DataFrame:
    lines = text.splitlines()
    header = next(
        (i for i, line in enumerate(lines[:5]) if _looks_like_header(line)),
        None,
    )
    if header is None:
        raise ParseError(symbol, "no CDD header line (unix,date,symbol,open,...) found")
    try:
        table = pd.read_csv(
            io.StringIO(text),
            skiprows=header,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ParseError(symbol, f"malformed CSV: {str(exc).strip()}") from None
    if table.empty:
        raise ParseError(symbol, "the CSV has a header but no candle rows")
    required = [c for c in table.columns if str(c).strip().lower() != "tradecount"]
    incomplete = (table[required].isna() | (table[required] == "")).any(axis=1).to_numpy()
    if incomplete.any():
        row = int(np.flatnonzero(incomplete)[0])
        raise ParseError(symbol, f"row {row + 1}: missing value (incomplete row, truncated body?)")
    return table


def _looks_like_header(line: str) -> bool:
    fields = {f.strip().lower() for f in line.split(",")}
    return "open" in fields and bool(fields & {"unix", "date"})


def _map_columns(columns: pd.Index, symbol: str) -> dict[str, str]:
    """Map the file's column names to ours; volumes by currency name, never by position."""
    by_lower = {str(c).strip().lower(): str(c) for c in columns}
    mapping: dict[str, str] = {}
    for ours, theirs in [("unix", "unix"), ("date", "date"), ("symbol", "symbol")]:
        if theirs in by_lower:
            mapping[by_lower[theirs]] = ours
    missing = [name for name in PRICE_COLUMNS if name not in by_lower]
    if missing or not ({"unix", "date"} & by_lower.keys()):
        raise ParseError(symbol, f"missing columns: {', '.join(missing or ['unix/date'])}")
    mapping.update({by_lower[name]: name for name in PRICE_COLUMNS})
    for key in ("tradecount", "trade_count"):
        if key in by_lower:
            mapping[by_lower[key]] = "trade_count"
    mapping.update(_volume_columns(by_lower, symbol))
    return mapping


def _volume_columns(by_lower: dict[str, str], symbol: str) -> dict[str, str]:
    volumes = {
        k.removeprefix("volume").strip(" _").upper(): v
        for k, v in by_lower.items()
        if k.startswith("volume") and k != "volume"
    }
    quote = [cur for cur in volumes if cur and symbol.endswith(cur) and cur != symbol]
    base = [cur for cur in volumes if cur and symbol.startswith(cur) and cur != symbol]
    if len(volumes) != 2 or len(base) != 1 or len(quote) != 1 or base == quote:
        found = ", ".join(sorted(by_lower[k] for k in by_lower if k.startswith("volume"))) or "none"
        raise ParseError(
            symbol,
            f"missing columns: need base and quote volume named after {symbol}'s currencies "
            f"(e.g. 'Volume BTC', 'Volume USDT'); found {found}",
        )
    return {volumes[base[0]]: "volume_base", volumes[quote[0]]: "volume_quote"}


def _check_symbol_column(table: pd.DataFrame, symbol: str) -> None:
    if "symbol" not in table:
        return
    uniques = pd.Series(table["symbol"].unique())  # a handful of spellings, not every row
    found = set(uniques.str.replace(r"[/\-_ ]", "", regex=True).str.upper())
    if found != {symbol}:
        shown = ", ".join(sorted(found)[:3])
        raise ParseError(symbol, f"the file holds {shown}, not {symbol}")


def _open_times(
    table: pd.DataFrame, symbol: str, timeframe: str, warnings: list[dict[str, object]]
) -> tuple[pd.Series, pd.Series]:
    """UTC open times (from Unix, checked against Date) and whether each row is newer-format."""
    dates = _dates(table["date"], symbol) if "date" in table else None
    if "unix" in table:
        unix = pd.to_numeric(table["unix"], errors="coerce")
        _fail_on_nan(unix, table["unix"], "unix", symbol)
        in_ms = unix >= _MS_THRESHOLD
        seconds = np.where(in_ms, unix / 1000.0, unix)
        open_time = pd.Series(
            pd.to_datetime(np.round(seconds), unit="s", utc=True), index=table.index
        )
        if dates is not None:
            disagree = int((open_time != dates).sum())
            if disagree:
                warnings.append(
                    {
                        "kind": "date_label",
                        "count": disagree,
                        "message": f"{disagree} rows have a Date label that disagrees with "
                        "their Unix time; the Unix time was used",
                    }
                )
        newer = pd.Series(in_ms, index=table.index)
    else:
        assert dates is not None  # noqa: S101 - _map_columns guarantees one of the two
        open_time = dates
        newer = table["date"].str.contains(":", regex=False)
    step = pd.Timedelta(period(timeframe))
    misaligned = (open_time - open_time.dt.floor(step)) != pd.Timedelta(0)
    if misaligned.any():
        row = int(np.flatnonzero(misaligned.to_numpy())[0])
        raise ParseError(
            symbol,
            f"row {row + 1}: open time {open_time.iloc[row]} is not on a {timeframe} boundary",
        )
    return open_time.astype("datetime64[ns, UTC]"), newer


def _dates(values: pd.Series, symbol: str) -> pd.Series:
    def normalise(text: str) -> str:
        match = _AM_PM.match(text.strip())
        if not match:
            return text.strip()
        day, hour, half = match.groups()
        hour_24 = int(hour) % 12 + (12 if half.upper() == "PM" else 0)
        return f"{day} {hour_24:02d}:00:00"

    # Vectorized passes for the two common layouts (ISO, then "2017-08-17 05-AM"); whatever
    # is left goes through the forgiving per-row path.
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    for layout in ("%Y-%m-%d %I-%p", "mixed"):
        rest = parsed.isna().to_numpy()
        if not rest.any():
            break
        left = values[rest]
        left = left.str.strip() if layout != "mixed" else left.map(normalise)
        parsed[rest] = pd.to_datetime(left, format=layout, utc=True, errors="coerce")
    _fail_on_nan(parsed, values, "date", symbol)
    return parsed


def _numbers(table: pd.DataFrame, name: str, symbol: str) -> pd.Series:
    values = pd.to_numeric(table[name], errors="coerce").astype("float64")
    retry = values.isna().to_numpy()
    if retry.any():  # stray spaces, e.g. "1.5 ": strip only those rows (stripping all is slow)
        values[retry] = pd.to_numeric(table[name][retry].str.strip(), errors="coerce")
    _fail_on_nan(values, table[name], name, symbol)
    return values


def _trade_counts(table: pd.DataFrame, symbol: str) -> pd.Series:
    if "trade_count" not in table:
        return pd.Series(pd.NA, index=table.index, dtype="Int64")
    raw = table["trade_count"].str.strip()
    nulls = raw.isin(_NULLS)
    numbers = pd.to_numeric(raw.where(~nulls), errors="coerce")
    _fail_on_nan(numbers[~nulls], raw[~nulls], "tradecount", symbol)
    return numbers.round().astype("Int64")


def _fail_on_nan(parsed: pd.Series, raw: pd.Series, column: str, symbol: str) -> None:
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = raw.iloc[row]
        what = "missing value" if str(value).strip() in _NULLS else f"unparseable value {value!r}"
        raise ParseError(symbol, f"row {row + 1}: {what} in column {column!r}")
