"""Shared by the bench scripts: the real CDD daily files as final candle frames."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from tasks.cdd import parse_cdd_csv
from tasks.validate import validate_candles

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cryptodatadownload"
DAILY_FILES = [SHARED / f"Binance_{s}USDT_d.csv" for s in ("BTC", "ETH", "ADA", "BNB")]


def daily_file(name: str) -> Path:
    """A CSV path as given, or a shared daily file by its coin (``ADA``) or pair (``ADAUSDT``):
    an argparse ``type`` for the bench scripts' file arguments."""
    pair = name.upper().removesuffix("USDT") + "USDT"
    shared = SHARED / f"Binance_{pair}_d.csv"
    return shared if shared in DAILY_FILES and not Path(name).exists() else Path(name)


def load_daily(path: Path) -> tuple[str, pd.DataFrame]:
    """(symbol, final candles) of a CDD daily file, whatever its name, through the project's
    parser and validator (which drops a newest candle saved while still open)."""
    symbol = file_symbol(Path(path))
    parsed = parse_cdd_csv(Path(path).read_bytes(), symbol=symbol, timeframe="d")
    validated = validate_candles(parsed.frame, symbol=symbol, timeframe="d", now=datetime.now(UTC))
    return symbol, validated.frame


def file_symbol(path: Path) -> str:
    """The one pair a CDD file's own symbol column names (``BTC/USDT`` reads ``BTCUSDT``).

    Raises
    ------
    ValueError: the file has no symbol column, or more than one pair in it.
    """
    lines = path.read_text(encoding="utf-8-sig").splitlines()[:5]
    header = next((i for i, line in enumerate(lines) if "symbol" in _fields(line)), None)
    if header is None:
        raise ValueError(f"{path.name}: no symbol column; cannot tell which pair the file holds")
    table = pd.read_csv(
        path, skiprows=header, dtype=str, keep_default_na=False, encoding="utf-8-sig"
    )
    column = next(c for c in table.columns if c.strip().lower() == "symbol")
    found = sorted(set(table[column].str.replace(r"[/\-_ ]", "", regex=True).str.upper()))
    if len(found) != 1:
        raise ValueError(f"{path.name}: holds {len(found)} pairs ({', '.join(found[:3])}), not one")
    return found[0]


def _fields(line: str) -> set[str]:
    return {field.strip().lower() for field in line.split(",")}
