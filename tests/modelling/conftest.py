"""Fixtures for the model tests: small hand-built candle frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

CandlesFactory = Callable[..., pd.DataFrame]


def make_candles(
    closes: Sequence[float], start: str = "2024-01-01", drop: Sequence[int] = ()
) -> pd.DataFrame:
    """Daily candles with the given closes (open = previous close), days in `drop` removed."""
    close = np.asarray(closes, dtype=float)
    index = pd.date_range(start, periods=len(close), freq="D", tz="UTC", name="open_time")
    open_ = np.concatenate([[close[0]], close[:-1]])
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99,
            "close": close,
            "volume_base": np.linspace(10.0, 20.0, len(close)),
            "volume_quote": np.linspace(10.0, 20.0, len(close)) * close,
            "trade_count": pd.array(np.arange(len(close)), dtype="Int64"),
        },
        index=index,
    )
    return frame.drop(index[list(drop)])


def wavy_closes(n: int, seed: int = 0) -> np.ndarray:
    """A learnable price path: log returns follow a slow sine plus a little noise."""
    rng = np.random.default_rng(seed)
    returns = 0.03 * np.sin(np.arange(n) / 2.0) + rng.normal(0, 0.002, n)
    return 100.0 * np.exp(np.cumsum(returns))


@pytest.fixture
def candles() -> CandlesFactory:
    return make_candles


@pytest.fixture
def wavy_frame() -> pd.DataFrame:
    return make_candles(wavy_closes(300))
