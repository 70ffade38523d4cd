"""Rules a candle frame must pass before it is stored: hard errors, warnings, the open candle.

Hard errors reject the whole file (nothing is written): non-positive prices, high below low
or outside open/close, negative volume, candles in the future. Warnings are kept with the
ingest run: missing periods (listed), suspicious jumps, and a newest candle whose volume is
far below the recent ones (saved while its period was still running; dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from candlecast.errors import ValidationError
from candlecast.identifiers import period

Warning_ = dict[str, object]
RECENT_CANDLES = 7  # the newest candle's volume is compared with the median of this many before it
MAX_LISTED = 50  # missing periods listed by date in one warning; the count is always complete


@dataclass
class ValidatedCandles:
    """Final candles ready to store, what was dropped as not final, and the warnings."""

    frame: pd.DataFrame
    dropped_open: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)


def validate_candles(
    frame: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    now: datetime,
    open_volume_ratio: float = 0.15,
    jump_ratio: float = 0.5,
) -> ValidatedCandles:
    """Check ``frame`` (from :func:`tasks.cdd.parse_cdd_csv`) and keep only final candles.

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

    Raises
    ------
    ValidationError
        Naming the first offending candle, for any hard rule broken.
    """
    step = pd.Timedelta(period(timeframe))
    _hard_rules(frame, symbol, now)
    final = frame.loc[frame.index + step <= now]
    dropped = [_label(t, timeframe) for t in frame.index.difference(final.index)]
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
        label = _label(suspect, timeframe)
        dropped.append(label)
        warnings.append(
            _warning(
                "probably_open",
                1,
                f"dropped the newest candle {label}: its volume is below "
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
    return ValidatedCandles(final, dropped, missing, warnings)


def _hard_rules(frame: pd.DataFrame, symbol: str, now: datetime) -> None:
    o, h, lo, c = (frame[name] for name in ("open", "high", "low", "close"))
    checks = [
        ((frame[["open", "high", "low", "close"]] <= 0).any(axis=1), "non-positive price"),
        (h < lo, "high below low"),
        ((h < o) | (h < c), "high below open or close"),
        ((lo > o) | (lo > c), "low above open or close"),
        ((frame["volume_base"] < 0) | (frame["volume_quote"] < 0), "negative volume"),
        (pd.Series(frame.index > now, index=frame.index), "candle in the future"),
    ]
    for bad, what in checks:
        if bad.any():
            first = bad[bad].index[0]
            row = frame.loc[first]
            raise ValidationError(
                symbol,
                f"{what} in the candle of {first.isoformat()} (open {row['open']}, high "
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
    return [_label(t, timeframe) for t in expected.difference(index)]


def _jumps(frame: pd.DataFrame, ratio: float, timeframe: str) -> list[Warning_]:
    move = (frame["close"] / frame["close"].shift(1) - 1).abs()
    body = (frame["close"] / frame["open"] - 1).abs()
    suspicious = frame.index[(move > ratio) | (body > ratio)]
    if suspicious.empty:
        return []
    labels = [_label(t, timeframe) for t in suspicious]
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


def _label(moment: pd.Timestamp, timeframe: str) -> str:
    return moment.strftime("%Y-%m-%d" if timeframe == "d" else "%Y-%m-%d %H:%M")


def _unit(timeframe: str) -> str:
    return "days" if timeframe == "d" else "hours"
