"""The errors candlecast raises on purpose; each message names what is wrong."""

from __future__ import annotations


class CandlecastError(Exception):
    """Base of every error candlecast raises on purpose (the CLI prints these in one line)."""


class InvalidInputError(CandlecastError, ValueError):
    """A symbol, exchange, timeframe or URL that fails its strict pattern."""


class SymbolError(CandlecastError):
    """Something went wrong for one symbol; the message starts with the symbol."""

    def __init__(self, symbol: str, cause: str) -> None:
        self.symbol = symbol
        self.cause = cause
        super().__init__(f"{symbol}: {cause}")


class FetchError(SymbolError):
    """The CDD file could not be downloaded (after retries, where retrying makes sense)."""


class ParseError(SymbolError):
    """The body is not a CDD candle CSV we can read; nothing was written."""


class ValidationError(SymbolError):
    """The candles break a hard rule (prices, volumes, time); nothing was written."""


class IncompleteWindowError(CandlecastError, ValueError):
    """The newest input window misses more candles than a forecast may bridge."""

    def __init__(self, first: str, last: str) -> None:
        self.first, self.last = first, last
        span = first if first == last else f"{first}..{last}"
        super().__init__(f"no forecast: {span} missing in the newest window")
