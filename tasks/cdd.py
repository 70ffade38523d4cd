"""Reading CryptoDataDownload (CDD) candle CSV files, in every variant CDD has served.

Variants handled (see ``shared/data/cryptodatadownload/README.md``): a banner line above the
header or none; header case (``unix``/``Unix``, ``Unix Timestamp``); Unix time in milliseconds
and in seconds (also written ``1502928000.0``) within one file; dates as ``YYYY-MM-DD``,
``YYYY-MM-DD HH:MM:SS`` and ``YYYY-MM-DD 05-AM``; newest row first; ``NULL`` trade counts;
volume columns named after the currency, or one ``Volume`` column (older files and other
exchanges': the base volume, with no quote volume); the same candle twice across a format change.

A row that cannot be a candle (an unreadable number or time, a missing price or base volume, a
time off the period boundary) is a bad row: returned with its raw fields in ``bad_rows``, never
in the frame. A missing quote volume is kept as NaN (stored as NULL), with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from candlecast.core.errors import ParseError
from candlecast.core.identifiers import label, period
from tasks.cdd_layout import (
    NULLS,
    PRICE_COLUMNS,
    check_symbol_column,
    decode,
    map_columns,
    read_table,
)

CANDLE_COLUMNS = [*PRICE_COLUMNS, "volume_base", "volume_quote", "trade_count"]
LISTED = 10  # periods named in a warning's message; its "periods" list is complete
_MS_THRESHOLD = 100_000_000_000  # Unix values above this are milliseconds (after 1973 in ms)
_MAX_SECONDS = 10_000_000_000  # a later Unix time (year 2286) is no candle's
_MAX_COUNT = 2**53  # trade counts beyond this do not survive float64 exactly
_AM_PM = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{1,2})-(AM|PM)$", re.IGNORECASE)


@dataclass(frozen=True)
class BadRow:
    """A row of the file that is never stored as a candle: where, why, and its fields as written."""

    row_number: int  # 1-based, counting candle rows below the header
    open_time: datetime | None  # None where the row's own time cannot be read
    reason: str
    raw: dict[str, str]


@dataclass
class ParsedCandles:
    """Candles read from one CDD file, oldest first, one row per period; and its bad rows."""

    frame: pd.DataFrame
    rows_read: int
    duplicates_resolved: int = 0
    warnings: list[dict[str, object]] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)  # fields as read
    sources: pd.Series = field(default_factory=pd.Series, repr=False)  # open_time -> table row

    def bad_rows_at(self, reasons: pd.Series) -> list[BadRow]:
        """The rows behind the candles at ``reasons``' open times, as bad rows for those reasons."""
        positions = self.sources.loc[reasons.index]
        return [
            _bad_row(self.table, int(position), moment, str(reason))
            for moment, position, reason in zip(reasons.index, positions, reasons, strict=True)
        ]


def parse_cdd_csv(content: bytes, *, symbol: str, timeframe: str) -> ParsedCandles:
    """Parse the body of a CDD CSV file into a candle frame and its bad rows.

    Parameters
    ----------
    content:
        The raw bytes as downloaded.
    symbol:
        The pair asked for (``BTCUSDT``); the file's own symbol column must agree.
    timeframe:
        ``d`` or ``1h``; an open time off a period boundary makes its row bad.

    Returns
    -------
    ParsedCandles
        ``frame`` is indexed by the UTC ``open_time`` (ascending, unique) with float64
        ``open, high, low, close, volume_base, volume_quote`` (NaN where the file or the row
        has no quote volume) and a nullable ``trade_count``; ``bad_rows`` lists the rows left
        out, in file order.

    Raises
    ------
    ParseError
        For anything that is not a complete CDD candle file: HTML, empty or truncated bodies,
        rows with another number of fields than the header, missing columns, another symbol,
        or no readable candle row at all.
    """
    raw = read_table(decode(content, symbol), symbol)
    columns = map_columns(raw.columns, symbol)
    table = raw.rename(columns=columns)[list(columns.values())]
    check_symbol_column(table, symbol)
    warnings: list[dict[str, object]] = []
    reasons = pd.Series("", index=table.index, dtype=object)
    open_time, newer_format = _open_times(table, timeframe, reasons, warnings)
    frame = pd.DataFrame(
        {
            name: _numbers(table.get(name), name, reasons, nullable=name == "volume_quote")
            for name in CANDLE_COLUMNS[:-1]
        }
    )
    frame["trade_count"] = _trade_counts(table.get("trade_count"), reasons)
    bad = (reasons != "").to_numpy()
    if bad.all():
        raise ParseError(symbol, f"no readable candle row; row 1: {reasons.iat[0]}")
    bad_rows = [_bad_row(raw, i, open_time.iat[i], reasons.iat[i]) for i in np.flatnonzero(bad)]
    frame = frame.assign(open_time=open_time, _newer=newer_format, _row=np.arange(len(frame)))
    frame, repeats = _one_per_period(frame.loc[~bad])
    warnings.extend(_duplicates(repeats))
    if "volume_quote" in table:
        warnings.extend(_null_volumes(frame, timeframe))
    sources = frame.pop("_row")
    return ParsedCandles(frame, len(table), repeats, warnings, bad_rows, raw, sources)


def _open_times(
    table: pd.DataFrame, timeframe: str, reasons: pd.Series, warnings: list[dict[str, object]]
) -> tuple[pd.Series, pd.Series]:
    """UTC open times (from Unix, checked against Date) and whether each row is newer-format;
    NaT where a row's time cannot be read."""
    dates = _dates(table["date"], reasons) if "date" in table else None
    if "unix" in table:
        open_time, newer = _unix_times(table["unix"], reasons)
        if dates is not None:
            _warn_on_disagreement(open_time, dates, warnings)
    else:
        assert dates is not None  # noqa: S101 - map_columns guarantees one of the two
        open_time, newer = dates, table["date"].str.contains(":", regex=False)
    step = pd.Timedelta(period(timeframe))
    misaligned = (open_time.notna() & (open_time != open_time.dt.floor(step))).to_numpy()
    _flag(
        reasons, misaligned, lambda i: f"open time {open_time.iat[i]} not on a {timeframe} boundary"
    )
    return open_time.astype("datetime64[ns, UTC]"), newer


def _unix_times(values: pd.Series, reasons: pd.Series) -> tuple[pd.Series, pd.Series]:
    unix = _numbers(values, "unix", reasons)
    in_ms = unix >= _MS_THRESHOLD
    seconds = unix.where(~in_ms, unix / 1000.0)
    usable = ((seconds >= 0) & (seconds < _MAX_SECONDS)).to_numpy()
    _flag(reasons, ~usable, lambda i: f"Unix time {values.iat[i]!r} is out of range")
    moments = pd.to_datetime(np.round(seconds.where(usable)), unit="s", utc=True)
    return pd.Series(moments, index=values.index), pd.Series(in_ms, index=values.index)


def _warn_on_disagreement(
    open_time: pd.Series, dates: pd.Series, warnings: list[dict[str, object]]
) -> None:
    disagree = int((open_time.notna() & dates.notna() & (open_time != dates)).sum())
    if disagree:
        warnings.append(
            {
                "kind": "date_label",
                "count": disagree,
                "message": f"{disagree} rows have a Date label that disagrees with "
                "their Unix time; the Unix time was used",
            }
        )


def _dates(values: pd.Series, reasons: pd.Series) -> pd.Series:
    def normalise(text: str) -> str:
        match = _AM_PM.match(text.strip())
        if not match:
            return text.strip()
        day, hour, half = match.groups()
        hour_24 = int(hour) % 12 + (12 if half.upper() == "PM" else 0)
        return f"{day} {hour_24:02d}:00:00"

    # Vectorized passes for the two common layouts (ISO, then "2017-08-17 05-AM"); what is
    # left is normalised row by row and read as ISO again. Never dateutil's guessing: it
    # reads "1..2" as a date.
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    passes = [(str.strip, "%Y-%m-%d %I-%p"), (normalise, "ISO8601")]
    for clean, layout in passes:
        rest = parsed.isna().to_numpy()
        if rest.any():
            left = values[rest].map(clean)
            parsed[rest] = pd.to_datetime(left, format=layout, utc=True, errors="coerce")
    _flag(reasons, parsed.isna().to_numpy(), lambda i: _unreadable(values.iat[i], "date"))
    return parsed


def _numbers(
    text: pd.Series | None, name: str, reasons: pd.Series, *, nullable: bool = False
) -> pd.Series:
    """Column ``name`` as float64, NaN where unusable; an unreadable value makes its row bad,
    and so does a missing one unless the column is ``nullable``."""
    if text is None:  # a layout without this column (one Volume: no quote volume)
        return pd.Series(np.nan, index=reasons.index, dtype="float64")
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    retry = values.isna().to_numpy()
    if retry.any():  # stray spaces, e.g. "1.5 ": strip only those rows (stripping all is slow)
        values[retry] = pd.to_numeric(text[retry].str.strip(), errors="coerce")
    unusable = ~np.isfinite(values.to_numpy())
    if nullable:
        unusable[unusable] = ~text[unusable].str.strip().isin(NULLS).to_numpy()
    _flag(reasons, unusable, lambda i: _unreadable(text.iat[i], name))
    return values.where(np.isfinite(values))


def _trade_counts(text: pd.Series | None, reasons: pd.Series) -> pd.Series:
    counts = _numbers(text, "trade_count", reasons, nullable=True)
    too_large = (counts.abs() >= _MAX_COUNT).to_numpy()
    _flag(reasons, too_large, lambda i: f"trade count {counts.iat[i]:.0f} is out of range")
    return counts.where(~too_large).round().astype("Int64")


def _unreadable(value: object, column: str) -> str:
    if str(value).strip() in NULLS:
        return f"missing value in column {column!r}"
    return f"unparseable value {value!r} in column {column!r}"


def _flag(reasons: pd.Series, bad: np.ndarray, why: Callable[[int], str]) -> None:
    """Give each row in ``bad`` without a reason yet the reason ``why(position)``: the first
    problem found is the one a row is quarantined for."""
    for position in np.flatnonzero(bad & (reasons.to_numpy() == "")):
        reasons.iat[position] = why(int(position))


def _bad_row(table: pd.DataFrame, position: int, moment: object, reason: str) -> BadRow:
    raw = {str(name): str(value) for name, value in table.iloc[position].items()}
    when = None if pd.isna(moment) else pd.Timestamp(moment).to_pydatetime()
    return BadRow(int(position) + 1, when, reason, raw)


def _one_per_period(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one row per period: the newer-format row, else the one nearer the top of the file."""
    frame = frame.sort_values(["open_time", "_newer", "_row"], ascending=[True, False, True])
    duplicated = frame.duplicated("open_time", keep="first")
    frame = frame.loc[~duplicated].drop(columns=["_newer"]).set_index("open_time")
    return frame, int(duplicated.sum())


def _duplicates(repeats: int) -> list[dict[str, object]]:
    if not repeats:
        return []
    what = "1 candle appeared twice" if repeats == 1 else f"{repeats} candles appeared twice"
    return [
        {
            "kind": "duplicates",
            "count": repeats,
            "message": f"{what}; kept one of each (the newer-format row)",
        }
    ]


def _null_volumes(frame: pd.DataFrame, timeframe: str) -> list[dict[str, object]]:
    empty = frame.index[frame["volume_quote"].isna().to_numpy()]
    if empty.empty:
        return []
    periods = [label(moment, timeframe) for moment in empty]
    shown = ", ".join(periods[:LISTED]) + (" ..." if len(periods) > LISTED else "")
    return [
        {
            "kind": "null_volume",
            "count": len(periods),
            "periods": periods,
            "message": f"no quote volume (stored as NULL) for {len(periods)} of the candles: "
            + shown,
        }
    ]
