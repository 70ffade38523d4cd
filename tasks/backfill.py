"""Which past days a backfill still has to forecast."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from candlecast.core.identifiers import check_exchange, check_symbol
from candlecast.core.settings import get_settings
from db.schema import Candle, ModelVersion
from db.session import session_factory


def days_to_backfill(
    symbol: str, exchange: str, start: date, end: date, timeframe: str = "d"
) -> list[date]:
    """Days in ``[start, end]`` that have a stored candle (so a forecast as of that day can be
    made from data that existed then) and no model version trained on data up to that day
    yet (the daily run or an earlier backfill already handled those)."""
    symbol, exchange = check_symbol(symbol), check_exchange(exchange)
    if end < start:
        raise ValueError(f"{symbol}: backfill end {end} is before start {start}")
    low = datetime(start.year, start.month, start.day, tzinfo=UTC)
    high = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    key = (Candle.exchange == exchange, Candle.symbol == symbol, Candle.timeframe == timeframe)
    with session_factory(get_settings().sqlalchemy_url())() as session:
        candles = set(
            session.scalars(
                select(Candle.open_time).where(
                    *key, Candle.open_time >= low, Candle.open_time < high
                )
            )
        )
        done = set(
            session.scalars(
                select(ModelVersion.data_end).where(
                    ModelVersion.exchange == exchange,
                    ModelVersion.symbol == symbol,
                    ModelVersion.timeframe == timeframe,
                    ModelVersion.data_end >= low,
                    ModelVersion.data_end < high,
                )
            )
        )
    return sorted(moment.date() for moment in candles - done)
