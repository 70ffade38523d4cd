"""Rules a candle frame must pass before it is stored: hard errors, bad rows, warnings.

A candle with an impossible price or volume (a non-positive price, high below low or outside
open/close, a negative volume) is a bad row: left out of the frame and, with the rows the parser
could not read, quarantined (:func:`quarantine`). The whole file is refused (nothing is written)
for a candle in the future, and when more of its rows are bad than :func:`bad_row_limit` allows.
Warnings are kept with the ingest run: missing periods (listed; a bad row's period is one),
suspicious jumps, and a newest candle whose volume is far below the recent ones (saved while its
period was still running; dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

import pandas as pd

from candlecast.core.errors import ValidationError
from candlecast.core.identifiers import label, period
from tasks.cdd import LISTED, BadRow, ParsedCandles
from tasks.cdd_layout import PRICE_COLUMNS

Warning_ = dict[str, object]
RECENT_CANDLES = 7  # the newest candle's volume is compared with the median of this many before it
MAX_LISTED = 50  # missing periods listed by date in one warning; the count is always complete
MAX_BAD_ROWS = 100  # a file with more bad rows is refused, however long it is
_ROW_RULES: list[tuple[Callable[[pd.DataFrame], pd.Series], str]] = [
    (lambda f: (f[PRICE_COLUMNS] <= 0).any(axis=1), "non-positive price"),
    (lambda f: f["high"] < f["low"], "high below low"),
    (lambda f: (f["high"] < f["open"]) | (f["high"] < f["close"]), "high below open or close"),
    (lambda f: (f["low"] > f["open"]) | (f["low"] > f["close"]), "low above open or close"),
    (lambda f: (f["volume_base"] < 0) | (f["volume_quote"] < 0), "negative volume"),
]


@dataclass
class ValidatedCandles:
    """Final candles ready to store, what was dropped as not final or impossible, the warnings."""

    frame: pd.DataFrame
    dropped_open: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)
    impossible: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))  # reasons


def validate_candles(
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    now: datetime,
    open_volume_ratio: float = 0.15,
    jump_ratio: float = 0.5,
) -> ValidatedCandles:
    """Check ``frame`` (from :func:`tasks.cdd.parse_cdd_csv`) and keep only final, possible candles.

    Parameters
    ----------
    frame:
        Candles indexed by UTC ``open_time``, ascending and unique.
    now:
        The current time (UTC-aware); a candle is final once ``open_time + period <= now``.
    open_volume_ratio:
        The newest candle is taken as still open, and dropped with a warning, when its base
        volume is below this share of the median of the :data:`RECENT_CANDLES` before it.
    jump_ratio:
        Warn when a close differs from the previous close, or from its own open, by more
        than this share.

    Returns
    -------
    ValidatedCandles
        ``impossible`` holds the rule each left-out impossible candle breaks, by open time.

    Raises
    ------
    ValidationError
        Naming the first candle in the future.
    """
    step = pd.Timedelta(period(timeframe))
    _refuse_future(frame, symbol, now)
    reasons = impossible_candles(frame)
    possible = frame.loc[(reasons == "").to_numpy()]
    final = possible.loc[possible.index + step <= now]
    dropped = [label(t, timeframe) for t in possible.index.difference(final.index)]
    warnings: list[Warning_] = []
    if dropped:
        warnings.append(
            _warning(
                "open_candle",
                len(dropped),
                f"dropped the candle of {', '.join(dropped)}: its period is not over yet",
            )
        )
    final, suspect = _drop_probably_open(final, open_volume_ratio)
    if suspect is not None:
        dropped.append(label(suspect, timeframe))
        warnings.append(
            _warning(
                "probably_open",
                1,
                f"dropped the newest candle {dropped[-1]}: its volume is below "
                f"{open_volume_ratio:.0%} of the median of the {RECENT_CANDLES} before it "
                "(probably saved while still open)",
            )
        )
    missing = _missing(final.index, step, timeframe)
    if missing:
        shown = ", ".join(missing[:MAX_LISTED]) + (" ..." if len(missing) > MAX_LISTED else "")
        warnings.append(
            _warning("missing", len(missing), f"{len(missing)} missing {_unit(timeframe)}: {shown}")
            | {"periods": missing}
        )
    warnings.extend(_jumps(final, jump_ratio, timeframe))
    return ValidatedCandles(final, dropped, missing, warnings, reasons[reasons != ""])


def impossible_candles(frame: pd.DataFrame) -> pd.Series:
    """The first price or volume rule each candle breaks, by open time; ``""`` where none."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    for rule, what in _ROW_RULES:
        reasons[rule(frame).to_numpy() & (reasons == "").to_numpy()] = what
    return reasons


def bad_row_limit(rows: int, share: float) -> int:
    """How many bad rows a file of ``rows`` rows may have and still be stored.

    ``share`` of its rows, at least one (a new pair's first hour is often bad) and at most
    :data:`MAX_BAD_ROWS`; none when ``share`` is 0.
    """
    return 0 if share <= 0 else min(MAX_BAD_ROWS, max(1, int(share * rows)))


def quarantine(
    parsed: ParsedCandles,
    checked: ValidatedCandles,
    *,
    symbol: str,
    timeframe: str,
    max_share: float,
) -> tuple[list[BadRow], list[Warning_]]:
    """Every bad row of a file (unreadable or impossible) in file order, and the warning naming
    them, once the file is known to have few enough of them to be stored.

    Raises
    ------
    ValidationError
        When more rows are bad than :func:`bad_row_limit` allows, or every row is; the message
        names the count and the first bad row with its fields.
    """
    bad = sorted(
        parsed.bad_rows + parsed.bad_rows_at(checked.impossible), key=attrgetter("row_number")
    )
    if not bad:
        return [], []
    limit = bad_row_limit(parsed.rows_read, max_share)
    if len(bad) > limit or len(bad) >= parsed.rows_read:
        problem = (
            "every row is bad"
            if len(bad) >= parsed.rows_read
            else f"{len(bad)} of {parsed.rows_read} rows are bad, more than the {limit} a file "
            "may have (CANDLECAST_MAX_BAD_ROW_SHARE)"
        )
        first = _describe(bad[0], timeframe, raw=True)
        raise ValidationError(symbol, f"{problem}; the first is {first}; nothing was stored")
    shown = "; ".join(_describe(row, timeframe) for row in bad[:LISTED])
    more = " ..." if len(bad) > LISTED else ""
    rows = "1 bad row" if len(bad) == 1 else f"{len(bad)} bad rows"
    message = f"quarantined {rows} (in rejected_candles, not stored): {shown}{more}"
    periods = [label(row.open_time, timeframe) for row in bad if row.open_time is not None]
    return bad, [_warning("quarantined", len(bad), message) | {"periods": periods}]


def _describe(row: BadRow, timeframe: str, *, raw: bool = False) -> str:
    when = f" ({label(row.open_time, timeframe)})" if row.open_time is not None else ""
    fields = f" [{','.join(row.raw.values())}]" if raw else ""
    return f"row {row.row_number}{when}: {row.reason}{fields}"


def _refuse_future(frame: pd.DataFrame, symbol: str, now: datetime) -> None:
    future = frame.index[frame.index > now]
    if len(future):
        row = frame.loc[future[0]]
        raise ValidationError(
            symbol,
            f"candle in the future at {future[0].isoformat()} (open {row['open']}, high "
            f"{row['high']}, low {row['low']}, close {row['close']}, volume "
            f"{row['volume_base']}); nothing was stored",
        )


def _drop_probably_open(
    frame: pd.DataFrame, ratio: float
) -> tuple[pd.DataFrame, pd.Timestamp | None]:
    if len(frame) <= RECENT_CANDLES:
        return frame, None
    recent = frame["volume_base"].iloc[-RECENT_CANDLES - 1 : -1].median()
    if recent > 0 and frame["volume_base"].iloc[-1] < ratio * recent:
        return frame.iloc[:-1], frame.index[-1]
    return frame, None


def _missing(index: pd.DatetimeIndex, step: pd.Timedelta, timeframe: str) -> list[str]:
    if len(index) < 2:
        return []
    expected = pd.date_range(index[0], index[-1], freq=step)
    return [label(t, timeframe) for t in expected.difference(index)]


def _jumps(frame: pd.DataFrame, ratio: float, timeframe: str) -> list[Warning_]:
    move = (frame["close"] / frame["close"].shift(1) - 1).abs()
    body = (frame["close"] / frame["open"] - 1).abs()
    suspicious = frame.index[(move > ratio) | (body > ratio)]
    if suspicious.empty:
        return []
    labels = [label(t, timeframe) for t in suspicious]
    return [
        _warning(
            "jump",
            len(labels),
            f"{len(labels)} suspicious price jumps over {ratio:.0%}: "
            + ", ".join(labels[:MAX_LISTED]),
        )
        | {"periods": labels}
    ]


def _warning(kind: str, count: int, message: str) -> Warning_:
    return {"kind": kind, "count": count, "message": message}


def _unit(timeframe: str) -> str:
    return "days" if timeframe == "d" else "hours"
