"""Strict patterns for what reaches a URL, a file path or SQL: exchange, symbol, timeframe."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from candlecast.core.errors import InvalidInputError

EXCHANGE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{1,31}")
SYMBOL_RE: Final = re.compile(r"[A-Z0-9]{2,24}")
TIMEFRAMES: Final[dict[str, timedelta]] = {"d": timedelta(days=1), "1h": timedelta(hours=1)}


def check_exchange(exchange: str) -> str:
    """``exchange`` as given, if it is 2-32 ASCII letters and digits starting with a letter."""
    if not isinstance(exchange, str) or not EXCHANGE_RE.fullmatch(exchange):
        raise InvalidInputError(
            f"invalid exchange {exchange!r}: expected 2-32 ASCII letters/digits, e.g. 'Binance'"
        )
    return exchange


def check_symbol(symbol: str) -> str:
    """``symbol`` upper-cased, if it is 2-24 ASCII letters and digits (e.g. ``BTCUSDT``)."""
    normalized = symbol.upper() if isinstance(symbol, str) and symbol.isascii() else None
    if normalized is None or not SYMBOL_RE.fullmatch(normalized):
        raise InvalidInputError(
            f"invalid symbol {symbol!r}: expected 2-24 ASCII letters/digits, e.g. 'BTCUSDT'"
        )
    return normalized


def check_timeframe(timeframe: str) -> str:
    """``timeframe`` if candlecast knows it (``d`` or ``1h``)."""
    if timeframe not in TIMEFRAMES:
        raise InvalidInputError(
            f"invalid timeframe {timeframe!r}: expected one of {', '.join(TIMEFRAMES)}"
        )
    return timeframe


def period(timeframe: str) -> timedelta:
    """The length of one candle of ``timeframe``."""
    return TIMEFRAMES[check_timeframe(timeframe)]


def label(moment: datetime, timeframe: str) -> str:
    """A candle as messages name it: ``2024-03-01`` (daily), ``2024-03-01 05:00`` (hourly)."""
    return moment.strftime("%Y-%m-%d" if check_timeframe(timeframe) == "d" else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Series:
    """One series of candles, (exchange, symbol, timeframe), checked once where it enters.

    It unpacks as that triple (``registry.champion(session, *series)``).
    """

    exchange: str
    symbol: str
    timeframe: str

    @classmethod
    def checked(cls, exchange: str, symbol: str, timeframe: str) -> Series:
        return cls(check_exchange(exchange), check_symbol(symbol), check_timeframe(timeframe))

    def __iter__(self) -> Iterator[str]:
        return iter((self.exchange, self.symbol, self.timeframe))

    def label(self, moment: datetime) -> str:
        return label(moment, self.timeframe)
