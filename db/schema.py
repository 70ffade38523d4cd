"""SQLAlchemy 2.0 typed schema of candlecast.

Times are stored in UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite; both come
back as timezone-aware UTC datetimes through :class:`UTCDateTime`. Prices are float64
(``DOUBLE PRECISION`` / SQLite ``REAL``), which keeps every CDD price (8 decimals at most)
exactly as written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Double = Float(precision=53)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored in UTC and always returned timezone-aware (UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: candlecast stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def of_series(entity: Any, exchange: str, symbol: str, timeframe: str) -> tuple[Any, ...]:
    """The WHERE clauses that pick one series' rows of a table keyed by (exchange, symbol,
    timeframe): ``select(Candle).where(*of_series(Candle, *series))``."""
    return (entity.exchange == exchange, entity.symbol == symbol, entity.timeframe == timeframe)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class IngestRun(Base):
    """One download of one CDD file: what came, what it did to the candles, or why it failed."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|success|failed
    http_status: Mapped[int | None]
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    rows_parsed: Mapped[int | None]
    inserted: Mapped[int | None]
    updated: Mapped[int | None]
    unchanged: Mapped[int | None]
    first_candle: Mapped[datetime | None]
    last_candle: Mapped[datetime | None]
    missing_count: Mapped[int | None]
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_ingest_runs_lookup", "exchange", "symbol", "timeframe", "started_at"),
    )


class Candle(Base):
    """One final (closed) OHLCV candle; ``open_time`` is the UTC start of its period."""

    __tablename__ = "candles"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    open_time: Mapped[datetime]
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume_base: Mapped[float] = mapped_column(Double)
    volume_quote: Mapped[float | None] = mapped_column(Double)  # None: the file has one Volume
    trade_count: Mapped[int | None] = mapped_column(BigInteger)
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id"))

    __table_args__ = (UniqueConstraint("exchange", "symbol", "timeframe", "open_time"),)


class RejectedCandle(Base):
    """A row of a CDD file that was quarantined, never stored as a candle: why, and as it was."""

    __tablename__ = "rejected_candles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ingest_run_id: Mapped[int] = mapped_column(ForeignKey("ingest_runs.id"))
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    open_time: Mapped[datetime | None]  # None where the row's own time could not be read
    row_number: Mapped[int]  # 1-based, counting candle rows below the header
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]]  # the row's fields as the file wrote them

    __table_args__ = (
        Index("ix_rejected_candles_series", "exchange", "symbol", "timeframe", "open_time"),
    )


class ModelSeries(Base):
    """One forecast series (exchange, symbol, timeframe): its version counter and champion.

    ``last_version`` is incremented inside the registering transaction, which locks the row
    (PostgreSQL) or the database (SQLite): version numbers are consecutive, without gaps.
    """

    __tablename__ = "model_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    last_version: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(Text)  # e.g. why there is no champion
    champion_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, name="fk_model_series_champion_id")
    )

    __table_args__ = (UniqueConstraint("exchange", "symbol", "timeframe"),)


class ModelVersion(Base):
    """A trained model: where it came from, how it scored, and whether it became champion."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("model_series.id"))
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # retrain | fine_tune
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    preset: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]]
    scaler: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any]]  # history, data range, policy memory: the rest of metadata
    metrics: Mapped[dict[str, Any]]
    train_start: Mapped[datetime | None]
    train_end: Mapped[datetime | None]
    train_rows: Mapped[int | None]
    data_end: Mapped[datetime | None]  # newest candle the model saw (the as-of of its data)
    test_start: Mapped[datetime | None]
    test_end: Mapped[datetime | None]
    test_mape: Mapped[float | None] = mapped_column(Double)
    test_persistence_mape: Mapped[float | None] = mapped_column(Double)
    test_skill: Mapped[float | None] = mapped_column(Double)
    # the h=1 coverage of the 80% and 95% bands and the 95% interval score, in %; None:
    # a point-only model
    test_cov80: Mapped[float | None] = mapped_column(Double)
    test_cov95: Mapped[float | None] = mapped_column(Double)
    test_winkler95: Mapped[float | None] = mapped_column(Double)
    champion_mape_same_window: Mapped[float | None] = mapped_column(Double)
    status: Mapped[str] = mapped_column(String(16))  # promoted | candidate
    decision: Mapped[str] = mapped_column(Text)
    ingest_run_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_runs.id"))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    libraries: Mapped[dict[str, Any]]
    sha256: Mapped[str] = mapped_column(String(64))
    served_sha256: Mapped[str | None] = mapped_column(String(64))  # None: no served twin
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    pruned_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("series_id", "version"),)


class ModelBlob(Base):
    """The ``.keras`` bytes of a version (its point network, and its band network where it has
    one; the same for its served twin where it has one), apart so that listing versions never
    loads them."""

    __tablename__ = "model_blobs"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)
    bands: Mapped[bytes | None] = mapped_column(LargeBinary)  # the band network; None: point-only
    served: Mapped[bytes | None] = mapped_column(LargeBinary)  # the served twin's networks
    served_bands: Mapped[bytes | None] = mapped_column(LargeBinary)


class ChampionChange(Base):
    """Which version was champion of a series from when to when, and why it changed."""

    __tablename__ = "champion_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("model_series.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_champion_changes_series", "series_id", "valid_from"),)


class Forecast(Base):
    """One predicted close: by a version, from the candles up to ``as_of``, ``horizon`` ahead.

    The band edges are close quantiles in price units: ``low95`` 0.025, ``low80`` 0.10,
    ``high80`` 0.90, ``high95`` 0.975 (``predicted_close`` is the median); the model's, and the
    naive band's around persistence. NULL in older rows and for models without a band network.
    """

    __tablename__ = "forecasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    as_of: Mapped[datetime]  # open time of the newest candle used
    target_time: Mapped[datetime]  # open time of the candle whose close is predicted
    horizon: Mapped[int]
    predicted_close: Mapped[float] = mapped_column(Double)
    low95: Mapped[float | None] = mapped_column(Double)
    low80: Mapped[float | None] = mapped_column(Double)
    high80: Mapped[float | None] = mapped_column(Double)
    high95: Mapped[float | None] = mapped_column(Double)
    persistence_close: Mapped[float] = mapped_column(Double)
    naive_low95: Mapped[float | None] = mapped_column(Double)
    naive_low80: Mapped[float | None] = mapped_column(Double)
    naive_high80: Mapped[float | None] = mapped_column(Double)
    naive_high95: Mapped[float | None] = mapped_column(Double)
    imputed_inputs: Mapped[int] = mapped_column(default=0, server_default="0")  # bridged candles
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    realized_close: Mapped[float | None] = mapped_column(Double)
    model_ape_pct: Mapped[float | None] = mapped_column(Double)
    persistence_ape_pct: Mapped[float | None] = mapped_column(Double)
    scored_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("version_id", "as_of", "horizon"),
        Index("ix_forecasts_series_target", "exchange", "symbol", "timeframe", "target_time"),
    )
