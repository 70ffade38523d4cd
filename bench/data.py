"""Shared by the bench scripts: the real CDD daily files as final candle frames."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tasks.cdd import parse_cdd_csv
from tasks.validate import validate_candles

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cryptodatadownload"
DAILY_FILES = [SHARED / f"Binance_{s}USDT_d.csv" for s in ("BTC", "ETH", "ADA", "BNB")]


def load_daily(path: Path) -> tuple[str, pd.DataFrame]:
    """(symbol, final candles) of a `Binance_<SYMBOL>_d.csv` file, through the project's parser
    and validator (which drops a newest candle saved while still open)."""
    symbol = Path(path).name.split("_")[1]
    parsed = parse_cdd_csv(Path(path).read_bytes(), symbol=symbol, timeframe="d")
    validated = validate_candles(parsed.frame, symbol=symbol, timeframe="d", now=datetime.now(UTC))
    return symbol, validated.frame
