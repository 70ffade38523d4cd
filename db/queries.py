"""Queries on candles, ingest runs and rejected candles; each takes a Session, never commits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Insert, delete, insert, select, text, update
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.schema import Candle, IngestRun, RejectedCandle, of_series

VALUE_COLUMNS = ["open", "high", "low", "close", "volume_base", "volume_quote", "trade_count"]
UPSERT_CHUNK = 2000
KEY = ["exchange", "symbol", "timeframe", "open_time"]


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int


def load_candles(
    session: Session,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame:
    """Stored candles of one series, indexed by UTC ``open_time`` ascending.

    Columns: float64 ``open, high, low, close, volume_base, volume_quote`` and nullable
    ``trade_count``; ``start``/``end`` bound ``open_time`` inclusively when given.
    """
    query = select(Candle.open_time, *(getattr(Candle, c) for c in VALUE_COLUMNS)).where(
        *of_series(Candle, exchange, symbol, timeframe)
    )
    if start is not None:
        query = query.where(Candle.open_time >= start)
    if end is not None:
        query = query.where(Candle.open_time <= end)
    rows = session.execute(query.order_by(Candle.open_time)).all()
    frame = pd.DataFrame(rows, columns=["open_time", *VALUE_COLUMNS])
    frame["open_time"] = pd.to_datetime(frame["open_time"], utc=True)
    for column in VALUE_COLUMNS[:-1]:
        frame[column] = frame[column].astype("float64")
    frame["trade_count"] = frame["trade_count"].astype("Int64")
    return frame.set_index("open_time")


def upsert_candles(
    session: Session,
    frame: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    ingest_run_id: int | None = None,
) -> UpsertCounts:
    """Insert new candles and update changed ones; unchanged candles are not written.

    The frame is compared with what is stored for the same range first, so re-ingesting an
    unchanged file writes nothing. The write itself is the dialect's ``INSERT ... ON CONFLICT
    DO UPDATE``, so a concurrent writer of the same candles cannot cause duplicates: on SQLite
    an executemany in chunks; on PostgreSQL the rows are first ``COPY``-ed into a temporary
    table and upserted from it in one statement (row-by-row executemany is ten times slower).
    """
    if frame.empty:
        return UpsertCounts(0, 0, 0)
    stored = load_candles(
        session, exchange, symbol, timeframe, start=frame.index[0], end=frame.index[-1]
    )
    new = frame.index.difference(stored.index)
    common = frame.index.intersection(stored.index)
    changed = common[_rows_differ(frame.loc[common], stored.loc[common])]
    to_write = frame.loc[new.union(changed)]
    records = _records(to_write, exchange, symbol, timeframe, ingest_run_id)
    if session.get_bind().dialect.name == "postgresql":
        _copy_upsert(session, records)
    else:
        statement = _upsert_statement(session)
        for start in range(0, len(records), UPSERT_CHUNK):  # Core executemany: no ORM per row
            session.connection().execute(statement, records[start : start + UPSERT_CHUNK])
    return UpsertCounts(len(new), len(changed), len(common) - len(changed))


def _rows_differ(incoming: pd.DataFrame, stored: pd.DataFrame) -> np.ndarray:
    differ = np.zeros(len(incoming), dtype=bool)
    for column in VALUE_COLUMNS:
        a, b = incoming[column], stored[column]
        both_missing = (a.isna() & b.isna()).to_numpy()
        equal = (a == b).fillna(False).to_numpy(dtype=bool)
        differ |= ~(equal | both_missing)
    return differ


def _records(
    frame: pd.DataFrame, exchange: str, symbol: str, timeframe: str, ingest_run_id: int | None
) -> list[dict[str, Any]]:
    counts = frame["trade_count"].astype("object").where(frame["trade_count"].notna(), None)
    columns = {
        "open_time": frame.index.to_pydatetime().tolist(),
        **{c: _floats(frame[c]) for c in VALUE_COLUMNS[:-1]},
        "trade_count": [None if v is None else int(v) for v in counts],
    }
    fixed = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    names = list(columns)
    return [
        {**fixed, **dict(zip(names, row, strict=True)), "ingest_run_id": ingest_run_id}
        for row in zip(*columns.values(), strict=True)
    ]


def _floats(values: pd.Series) -> list[float | None]:
    """Python floats, None where NaN: a missing quote volume is NULL, never PostgreSQL's NaN."""
    return [None if math.isnan(v) else v for v in values.to_numpy(dtype="float64").tolist()]


def _copy_upsert(session: Session, records: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the rows into a temporary table, then one INSERT ... SELECT ... ON
    CONFLICT DO UPDATE from it, in the session's transaction."""
    if not records:
        return
    names = list(records[0])
    listed = ", ".join(names)
    connection = session.connection()
    connection.execute(
        text(
            f"CREATE TEMPORARY TABLE candles_incoming ON COMMIT DROP AS "  # noqa: S608 - names
            f"SELECT {listed} FROM candles WITH NO DATA"  # are ours, not input
        )
    )
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY candles_incoming ({listed}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(tuple(record.values()))
    statement = postgresql.insert(Candle).from_select(
        names, select(*map(sql_column, names)).select_from(sql_table("candles_incoming"))
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=KEY,
            set_={c: statement.excluded[c] for c in [*VALUE_COLUMNS, "ingest_run_id"]},
        )
    )
    connection.execute(text("DROP TABLE candles_incoming"))


def dialect_insert(session: Session, table: Any) -> Insert:
    """The dialect's own ``INSERT`` (with ``on_conflict_do_*``) for SQLite or PostgreSQL."""
    dialect = session.get_bind().dialect.name
    module = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
    if module is None:
        raise NotImplementedError(f"candlecast supports SQLite and PostgreSQL, not {dialect}")
    return module.insert(table)


def _upsert_statement(session: Session) -> Insert:
    statement = dialect_insert(session, Candle)
    return statement.on_conflict_do_update(
        index_elements=KEY,
        set_={c: statement.excluded[c] for c in [*VALUE_COLUMNS, "ingest_run_id"]},
    )


def replace_rejected_candles(
    session: Session,
    rows: Sequence[dict[str, Any]],
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    ingest_run_id: int,
) -> None:
    """Make ``rows`` the series' rejected candles: the bad rows of its newest ingested file.

    Each row holds ``row_number``, ``open_time`` (or None), ``reason`` and ``raw``. Replacing
    instead of adding keeps a re-ingest of the same file from growing the table, and a row
    CDD has since corrected leaves the quarantine with the file that corrected it.
    """
    series = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    session.execute(
        delete(RejectedCandle).where(
            *of_series(RejectedCandle, exchange, symbol, timeframe),
        )
    )
    if rows:
        session.execute(
            insert(RejectedCandle),
            [{**series, **row, "ingest_run_id": ingest_run_id} for row in rows],
        )


def start_ingest_run(
    session: Session,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    url: str,
    flow_run_id: str | None = None,
) -> IngestRun:
    """A new ingest run in state ``running`` (flushed, so it has its id).

    The caller holds the series' ingest lock, so any other run of the series still marked
    ``running`` belongs to a process that died (SIGKILL, power loss): it is closed as failed.
    """
    session.execute(
        update(IngestRun)
        .where(
            *of_series(IngestRun, exchange, symbol, timeframe),
            IngestRun.status == "running",
        )
        .values(status="failed", error="abandoned: its process ended before finishing")
    )
    run = IngestRun(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        url=url,
        flow_run_id=flow_run_id,
        warnings=[],
    )
    session.add(run)
    session.flush()
    return run


def finish_ingest_run(session: Session, run_id: int, **values: Any) -> None:
    """Record the outcome of ingest run ``run_id`` (status, counts, error, ...)."""
    session.execute(update(IngestRun).where(IngestRun.id == run_id).values(**values))


def latest_ingest_run(
    session: Session, exchange: str, symbol: str, timeframe: str, *, status: str = "success"
) -> IngestRun | None:
    """The newest ingest run of a series with ``status``, or None."""
    return session.scalars(
        select(IngestRun)
        .where(
            *of_series(IngestRun, exchange, symbol, timeframe),
            IngestRun.status == status,
        )
        .order_by(IngestRun.id.desc())
        .limit(1)
    ).first()
