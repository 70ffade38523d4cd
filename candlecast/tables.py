"""The CLI's output: rows as an aligned text table, CSV or JSON.

Written by hand rather than with rich (which typer brings): a rich table wraps and truncates
cells to the terminal's width and draws box characters, while these tables stay one row a
line, whatever the width, for ``grep``, ``cut`` and scripts; CSV and JSON serve programs.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def render(rows: list[dict[str, Any]], columns: list[str], output: str, empty: str) -> str:
    """Rows as an aligned text table, CSV or JSON."""
    if output == "json":
        return json.dumps([{c: row.get(c) for c in columns} for row in rows], default=str, indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    if not rows:
        return empty
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)
