"""Forecasts: stored once per (version, as-of day, horizon), then scored when their target
candle arrives. Every function takes a Session and never commits."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.queries import dialect_insert
from db.schema import Candle, Forecast, ModelVersion, of_series, utcnow

BAND_COLUMNS = tuple(
    prefix + edge for prefix in ("", "naive_") for edge in ("low95", "low80", "high80", "high95")
)
"""A forecast row's band edges: the model's band, then the naive band around persistence."""


def save_forecasts(
    session: Session,
    version: ModelVersion,
    rows: Iterable[dict[str, Any]],
    flow_run_id: str | None = None,
) -> int:
    """Insert forecast rows (``as_of, target_time, horizon, predicted_close,
    persistence_close``, and optionally the band edges of `BAND_COLUMNS`) of ``version``; rows
    already stored for the same (version, as_of, horizon) are kept as they are. Returns how many
    were new.

    A band edge that is missing or NaN (past the band network's horizon, a point-only model) is
    stored as NULL, on PostgreSQL too, where NaN is a value the views would count.
    """
    records = [
        {
            **row,
            **{column: _edge(row.get(column)) for column in BAND_COLUMNS},
            "version_id": version.id,
            "exchange": version.exchange,
            "symbol": version.symbol,
            "timeframe": version.timeframe,
            "flow_run_id": flow_run_id,
            "created_at": utcnow(),
        }
        for row in rows
    ]
    if not records:
        return 0
    statement = (
        dialect_insert(session, Forecast)
        .on_conflict_do_nothing(index_elements=["version_id", "as_of", "horizon"])
        .returning(Forecast.id)
    )
    return _insert_count(session, statement, records)


def _edge(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _insert_count(session: Session, statement: Any, records: list[dict[str, Any]]) -> int:
    inserted = 0
    for record in records:  # a handful of rows a day; RETURNING tells which were new
        inserted += len(session.execute(statement, record).all())
    return inserted


def score_forecasts(session: Session, exchange: str, symbol: str, timeframe: str) -> int:
    """Fill in the realized close and absolute percentage errors of forecasts whose target
    candle has arrived. Returns how many forecasts were scored now.

    ``ape_pct = |predicted - realized| / realized * 100`` for the model and for persistence.
    """
    pending = session.execute(
        select(Forecast.id, Forecast.predicted_close, Forecast.persistence_close, Candle.close)
        .join(
            Candle,
            (Candle.exchange == Forecast.exchange)
            & (Candle.symbol == Forecast.symbol)
            & (Candle.timeframe == Forecast.timeframe)
            & (Candle.open_time == Forecast.target_time),
        )
        .where(
            *of_series(Forecast, exchange, symbol, timeframe),
            Forecast.realized_close.is_(None),
        )
    ).all()
    now = utcnow()
    for forecast_id, predicted, persistence, realized in pending:
        session.execute(
            update(Forecast)
            .where(Forecast.id == forecast_id)
            .values(
                realized_close=realized,
                model_ape_pct=abs(predicted - realized) / realized * 100.0,
                persistence_ape_pct=abs(persistence - realized) / realized * 100.0,
                scored_at=now,
            )
        )
    return len(pending)


def served_bands(
    session: Session,
    exchange: str,
    symbol: str,
    timeframe: str,
    limit: int,
    horizon: int = 1,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[tuple[float, float, float, float, float]]:
    """The newest `limit` scored forecasts `horizon` periods ahead that carried the model's
    band, whichever version served them: (realized close, low95, low80, high80, high95),
    newest target first. `since`: only those forecast from the candle that opened then or a
    later one; `until`: only those whose target candle opened by then."""
    edges = [getattr(Forecast, column) for column in BAND_COLUMNS[:4]]
    window = [Forecast.as_of >= since] if since is not None else []
    window += [Forecast.target_time <= until] if until is not None else []
    rows = session.execute(
        select(Forecast.realized_close, *edges)
        .where(
            *of_series(Forecast, exchange, symbol, timeframe),
            Forecast.horizon == horizon,
            Forecast.realized_close.is_not(None),
            *(edge.is_not(None) for edge in edges),
            *window,
        )
        .order_by(Forecast.target_time.desc(), Forecast.id.desc())
        .limit(limit)
    ).all()
    return [tuple(row) for row in rows]
