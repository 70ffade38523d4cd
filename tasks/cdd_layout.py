"""The layout of a CDD file: its text, its header among the banner lines, the columns it
names (``unix``/``Unix``/``Unix Timestamp``, volumes by currency or one ``Volume``), and
whether it is complete. Reading the rows' values is ``tasks.cdd``'s."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from candlecast.core.errors import ParseError

PRICE_COLUMNS = ["open", "high", "low", "close"]
NULLS = {"", "NULL", "null", "NaN", "nan", "None"}
KEY_COLUMNS = {"unix": "unix", "unix timestamp": "unix", "date": "date", "symbol": "symbol"}


def decode(content: bytes, symbol: str) -> str:
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


def read_table(text: str, symbol: str) -> pd.DataFrame:
    lines = text.splitlines()
    header = next(
        (i for i, line in enumerate(lines[:5]) if _looks_like_header(line)),
        None,
    )
    if header is None:
        raise ParseError(symbol, "no CDD header line (unix,date,symbol,open,...) found")
    body = [line for line in lines[header + 1 :] if line.strip()]
    if not body:
        raise ParseError(symbol, "the CSV has a header but no candle rows")
    _check_complete(lines[header], body, symbol)
    try:
        table = pd.read_csv(
            io.StringIO("\n".join([lines[header], *body])),
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ParseError(symbol, f"malformed CSV: {str(exc).strip()}") from None
    if len(table) != len(body):
        raise ParseError(symbol, "malformed CSV: quoted fields span lines")
    return table


def _check_complete(header: str, body: list[str], symbol: str) -> None:
    """Refuse rows with another number of fields than the header, and a last row ending in an
    empty field: what a download or copy cut off mid-row leaves."""
    expected = header.count(",")
    counts = np.fromiter((line.count(",") for line in body), dtype=np.int64, count=len(body))
    wrong = np.flatnonzero(counts != expected)
    if wrong.size:
        row = int(wrong[0])
        cut = " (incomplete row: truncated file?)" if counts[row] < expected else ""
        raise ParseError(
            symbol, f"row {row + 1} has {counts[row] + 1} fields, the header {expected + 1}{cut}"
        )
    if not body[-1].rsplit(",", 1)[-1].strip():
        raise ParseError(
            symbol, f"row {len(body)}: the last row ends in an empty field (truncated file?)"
        )


def _looks_like_header(line: str) -> bool:
    fields = {f.strip().lower() for f in line.split(",")}
    return "open" in fields and bool(fields & {"unix", "date"})


def map_columns(columns: pd.Index, symbol: str) -> dict[str, str]:
    """Map the file's column names to ours; volumes by currency name, never by position."""
    by_lower = {str(c).strip().lower(): str(c) for c in columns}
    mapping: dict[str, str] = {}
    for theirs, ours in KEY_COLUMNS.items():
        if theirs in by_lower and ours not in mapping.values():
            mapping[by_lower[theirs]] = ours
    missing = [name for name in PRICE_COLUMNS if name not in by_lower]
    if missing or not ({"unix", "date"} & set(mapping.values())):
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
    if not volumes and "volume" in by_lower:  # one Volume column: the base volume, no quote
        return {by_lower["volume"]: "volume_base"}
    quote = [cur for cur in volumes if cur and symbol.endswith(cur) and cur != symbol]
    base = [cur for cur in volumes if cur and symbol.startswith(cur) and cur != symbol]
    if len(volumes) != 2 or len(base) != 1 or len(quote) != 1 or base == quote:
        found = ", ".join(sorted(by_lower[k] for k in by_lower if k.startswith("volume"))) or "none"
        raise ParseError(
            symbol,
            f"missing columns: need base and quote volume named after {symbol}'s currencies "
            f"(e.g. 'Volume BTC', 'Volume USDT') or one 'Volume' column; found {found}",
        )
    return {volumes[base[0]]: "volume_base", volumes[quote[0]]: "volume_quote"}


def check_symbol_column(table: pd.DataFrame, symbol: str) -> None:
    if "symbol" not in table:
        return
    uniques = pd.Series(table["symbol"].unique())  # a handful of spellings, not every row
    uniques = uniques[~uniques.str.strip().isin(NULLS)]  # an empty cell names no other pair
    found = set(uniques.str.replace(r"[/\-_ ]", "", regex=True).str.upper())
    if found - {symbol}:
        shown = ", ".join(sorted(found)[:3])
        raise ParseError(symbol, f"the file holds {shown}, not {symbol}")
