"""Model versions and champions. Every function takes a Session and never commits.

Registering a version is one transaction owned by the caller: the version row, its bytes, the
series counter and (when promoted) the champion change commit together or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from candlecast.core.errors import CandlecastError
from db.queries import dialect_insert
from db.schema import (
    ChampionChange,
    Forecast,
    ModelBlob,
    ModelSeries,
    ModelVersion,
    of_series,
    utcnow,
)


class TamperedModelError(CandlecastError):
    """Stored model bytes whose sha256 differs from the one registered: refused."""


@dataclass(frozen=True)
class NewVersion:
    """What the registry needs of a trained model (see tasks.registry for the conversion)."""

    exchange: str
    symbol: str
    timeframe: str
    kind: str
    preset: str
    model_bytes: bytes
    config: dict[str, Any]
    scaler: dict[str, Any]
    details: dict[str, Any]
    metrics: dict[str, Any]
    libraries: dict[str, Any]
    train_start: datetime | None = None
    train_end: datetime | None = None
    train_rows: int | None = None
    data_end: datetime | None = None
    test_start: datetime | None = None
    test_end: datetime | None = None
    test_mape: float | None = None
    test_persistence_mape: float | None = None
    test_skill: float | None = None
    test_cov80: float | None = None
    test_cov95: float | None = None
    test_winkler95: float | None = None
    parent_id: int | None = None
    ingest_run_id: int | None = None
    flow_run_id: str | None = None
    band_bytes: bytes | None = None  # the band network's .keras bytes; None: point-only
    served_bytes: bytes | None = None  # the served twin's point network; None: no twin
    served_band_bytes: bytes | None = None  # the served twin's band network


def claim_version(session: Session, exchange: str, symbol: str, timeframe: str) -> tuple[int, int]:
    """Take the next version number of a series: ``(series_id, version)``.

    The series row is created if needed and incremented in place; the update locks it (the
    whole database on SQLite) until the caller's transaction ends, so concurrent registrations
    get consecutive numbers and a rolled-back one leaves no gap.
    """
    key = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    session.execute(
        dialect_insert(session, ModelSeries).values(**key, last_version=0).on_conflict_do_nothing()
    )
    row = session.execute(
        update(ModelSeries)
        .where(*(getattr(ModelSeries, k) == v for k, v in key.items()))
        .values(last_version=ModelSeries.last_version + 1)
        .returning(ModelSeries.id, ModelSeries.last_version)
    ).one()
    return row.id, row.last_version


def get_series(session: Session, exchange: str, symbol: str, timeframe: str) -> ModelSeries | None:
    return session.scalars(
        select(ModelSeries).where(
            *of_series(ModelSeries, exchange, symbol, timeframe),
        )
    ).one_or_none()


def champion(session: Session, exchange: str, symbol: str, timeframe: str) -> ModelVersion | None:
    """The series' current champion, or None while no version beats persistence."""
    return session.scalars(
        select(ModelVersion)
        .join(ModelSeries, ModelSeries.champion_id == ModelVersion.id)
        .where(
            *of_series(ModelSeries, exchange, symbol, timeframe),
        )
    ).one_or_none()


def latest_version(
    session: Session,
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    data_until: datetime | None = None,
    by: Literal["version", "data_end"] = "version",
    kind: Literal["retrain", "fine_tune"] | None = None,
) -> ModelVersion | None:
    """The newest version of a series (champion or not), or None; with ``data_until``, the
    newest one that saw no candle after it (for a backfill without look-ahead); with
    ``kind``, the newest of that kind.

    ``by="data_end"``: the one that saw the newest candle (of several, the newest version); a
    backfill's versions come later in number but see older data.
    """
    query = select(ModelVersion).where(
        *of_series(ModelVersion, exchange, symbol, timeframe),
    )
    if data_until is not None:
        query = query.where(ModelVersion.data_end <= data_until)
    if kind is not None:
        query = query.where(ModelVersion.kind == kind)
    order = [ModelVersion.version.desc()]
    if by == "data_end":
        query = query.where(ModelVersion.data_end.is_not(None))
        order.insert(0, ModelVersion.data_end.desc())
    return session.scalars(query.order_by(*order).limit(1)).first()


def add_version(
    session: Session,
    new: NewVersion,
    *,
    decision: str,
    champion_mape_same_window: float | None,
    now: datetime | None = None,
) -> ModelVersion:
    """Store ``new`` with its bytes under the next version number, as a candidate. The band
    networks' sha256, where there are any, go into ``details`` as ``bands_sha256`` and
    ``served_bands_sha256``; the served twin's point network's into ``served_sha256``."""
    series_id, number = claim_version(session, new.exchange, new.symbol, new.timeframe)
    blobs = {"model_bytes", "band_bytes", "served_bytes", "served_band_bytes"}
    fields = {k: v for k, v in new.__dict__.items() if k not in blobs}
    hashes = {"bands_sha256": new.band_bytes, "served_bands_sha256": new.served_band_bytes}
    fields["details"] = new.details | {
        key: _sha256(data) for key, data in hashes.items() if data is not None
    }
    version = ModelVersion(
        **fields,
        series_id=series_id,
        version=number,
        created_at=now or utcnow(),
        status="candidate",
        decision=decision,
        champion_mape_same_window=champion_mape_same_window,
        sha256=_sha256(new.model_bytes),
        served_sha256=None if new.served_bytes is None else _sha256(new.served_bytes),
        size_bytes=len(new.model_bytes),
    )
    session.add(version)
    session.flush()
    blob = ModelBlob(
        version_id=version.id,
        data=new.model_bytes,
        bands=new.band_bytes,
        served=new.served_bytes,
        served_bands=new.served_band_bytes,
    )
    session.add(blob)
    session.flush()
    return version


def promote(
    session: Session, version: ModelVersion, reason: str, now: datetime | None = None
) -> None:
    """Make ``version`` its series' champion: close the previous champion's history row, open
    one for this version, clear the series note."""
    now = now or utcnow()
    session.execute(
        update(ChampionChange)
        .where(ChampionChange.series_id == version.series_id, ChampionChange.valid_to.is_(None))
        .values(valid_to=now)
    )
    session.add(
        ChampionChange(
            series_id=version.series_id, version_id=version.id, valid_from=now, reason=reason
        )
    )
    session.execute(
        update(ModelSeries)
        .where(ModelSeries.id == version.series_id)
        .values(champion_id=version.id, note=None)
    )
    version.status = "promoted"
    session.flush()


def set_note(session: Session, series_id: int, note: str | None) -> None:
    """Say something plainly about a series (e.g. why it has no champion); None clears it."""
    session.execute(update(ModelSeries).where(ModelSeries.id == series_id).values(note=note))


def champion_at(
    session: Session, exchange: str, symbol: str, timeframe: str, when: datetime
) -> int | None:
    """The version number that was champion of a series at ``when``, or None."""
    return session.scalar(
        select(ModelVersion.version)
        .join(ChampionChange, ChampionChange.version_id == ModelVersion.id)
        .join(ModelSeries, ModelSeries.id == ChampionChange.series_id)
        .where(
            *of_series(ModelSeries, exchange, symbol, timeframe),
            ChampionChange.valid_from <= when,
            or_(ChampionChange.valid_to.is_(None), ChampionChange.valid_to > when),
        )
    )


def model_bytes(session: Session, version: ModelVersion) -> bytes:
    """The version's ``.keras`` bytes, after checking them against the registered sha256.

    Raises
    ------
    TamperedModelError
        The bytes are gone (pruned) or their sha256 differs from the registered one.
    """
    data = session.scalar(select(ModelBlob.data).where(ModelBlob.version_id == version.id))
    return _checked(data, version.sha256, f"{version.symbol} model v{version.version}")


def band_bytes(session: Session, version: ModelVersion) -> bytes | None:
    """The ``.keras`` bytes of the version's band network, after checking them against the
    sha256 registered in ``details["bands_sha256"]``; None for a version registered without one.

    Raises
    ------
    TamperedModelError
        The bytes are gone (pruned) or their sha256 differs from the registered one.
    """
    registered = version.details.get("bands_sha256")
    if registered is None:
        return None
    data = session.scalar(select(ModelBlob.bands).where(ModelBlob.version_id == version.id))
    return _checked(data, registered, f"{version.symbol} band network v{version.version}")


def served_bytes(session: Session, version: ModelVersion) -> tuple[bytes, bytes | None] | None:
    """The ``.keras`` bytes of the version's served twin: (point network, band network or
    None), each checked against its registered sha256 (``served_sha256``, and
    ``details["served_bands_sha256"]``); None for a version without a served twin.

    Raises
    ------
    TamperedModelError
        The bytes are gone (pruned) or a sha256 differs from the registered one.
    """
    if version.served_sha256 is None:
        return None
    row = session.execute(
        select(ModelBlob.served, ModelBlob.served_bands).where(ModelBlob.version_id == version.id)
    ).first()
    served, bands = row if row is not None else (None, None)
    label = f"{version.symbol} served twin v{version.version}"
    point = _checked(served, version.served_sha256, label)
    registered = version.details.get("served_bands_sha256")
    if registered is None:
        return point, None
    return point, _checked(bands, registered, f"{label}'s band network")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked(data: bytes | None, registered: str, label: str) -> bytes:
    if data is None:
        raise TamperedModelError(f"{label}: its bytes were pruned; it cannot be loaded")
    digest = _sha256(data)
    if digest != registered:
        raise TamperedModelError(
            f"{label}: stored bytes have sha256 {digest[:16]}..., registered "
            f"{registered[:16]}...; refusing to load a modified model"
        )
    return bytes(data)


def protected_version_ids(session: Session) -> set[int]:
    """Versions whose bytes are never pruned: champions now or before, and versions that
    forecasts point to."""
    former = select(ChampionChange.version_id)
    current = select(ModelSeries.champion_id).where(ModelSeries.champion_id.is_not(None))
    with_forecasts = select(Forecast.version_id).distinct()
    ids: set[int] = set()
    for query in (former, current, with_forecasts):
        ids.update(session.scalars(query))
    return ids


def prune(session: Session, keep: int, symbol: str | None = None) -> list[ModelVersion]:
    """Delete the bytes of all but the ``keep`` newest versions of each series, never those of
    a protected version; the version rows stay (marked ``pruned_at``). Returns the pruned."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    protected = protected_version_ids(session)
    rank = (
        func.row_number()
        .over(partition_by=ModelVersion.series_id, order_by=ModelVersion.version.desc())
        .label("rank")
    )
    ranked = select(ModelVersion.id, rank).where(
        exists().where(ModelBlob.version_id == ModelVersion.id)
    )
    if symbol is not None:
        ranked = ranked.where(ModelVersion.symbol == symbol)
    old = [row.id for row in session.execute(ranked) if row.rank > keep and row.id not in protected]
    if not old:
        return []
    session.execute(delete(ModelBlob).where(ModelBlob.version_id.in_(old)))
    session.execute(update(ModelVersion).where(ModelVersion.id.in_(old)).values(pruned_at=utcnow()))
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.id.in_(old))
            .order_by(ModelVersion.symbol, ModelVersion.version)
        )
    )


def view_rows(
    session: Session, view: str, symbol: str | None = None, order: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Rows of one of the SQL views, as dicts (for the CLI)."""
    if view not in {
        "latest_forecasts",
        "forecast_accuracy",
        "model_leaderboard",
        "champion_history",
        "series_status",
    }:
        raise ValueError(f"unknown view {view!r}")
    sql = f"SELECT * FROM {view}"  # noqa: S608 - view name checked against a fixed set above
    params: dict[str, Any] = {}
    if symbol is not None:
        sql += " WHERE symbol = :symbol"
        params["symbol"] = symbol
    if order:
        if not all(column.isidentifier() for column in order):
            raise ValueError(f"bad ORDER BY columns {order!r}")
        sql += " ORDER BY " + ", ".join(order)
    return [dict(row._mapping) for row in session.execute(text(sql), params)]
