"""Forecast bands in the database, on SQLite and PostgreSQL: forecast_accuracy scores them as
tasks/intervals.py does, latest_forecasts shows them, migrations 0004 and 0005 go down to 0003
exactly and up again, a band network's and a served twin's bytes round-trip through the
registry, checked, and model_leaderboard shows the band scores and which versions serve."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import inspect, update

from db import forecasts, registry
from db.forecasts import BAND_COLUMNS
from db.migrate import alembic_config, upgrade
from db.queries import upsert_candles
from db.schema import ModelBlob, ModelVersion
from db.session import get_engine, session_factory
from tasks.intervals import coverage, winkler
from tests.conftest import scratch_postgres_database

T0 = datetime(2024, 3, 1, tzinfo=UTC)
Edges = tuple[float, float, float, float]  # low95, low80, high80, high95

# (realised close, the model's band, the naive band); None: a row without bands
CASES: list[tuple[float, Edges | None, Edges | None]] = [
    (100.0, (90.0, 95.0, 105.0, 110.0), (80.0, 90.0, 110.0, 120.0)),  # inside every band
    (107.0, (90.0, 95.0, 105.0, 110.0), (95.0, 98.0, 104.0, 108.0)),  # outside 80%, inside 95%
    (85.0, (90.0, 95.0, 105.0, 110.0), (80.0, 84.0, 110.0, 120.0)),  # below the model's 95%
    (118.0, (90.0, 95.0, 105.0, 110.0), (95.0, 98.0, 104.0, 108.0)),  # above both 95% bands
    (105.0, (90.0, 95.0, 105.0, 110.0), (80.0, 90.0, 105.0, 120.0)),  # on the 80% edges: inside
    (60.0, None, None),  # far outside, but no band: counted in n_scored only
]


def register(
    url: str, champion: bool, band_bytes: bytes | None = None, **fields: Any
) -> ModelVersion:
    """A BTCUSDT version whose point network is b"point", champion or a candidate; `fields`:
    more of `registry.NewVersion`'s."""
    new = registry.NewVersion(
        exchange="Binance",
        symbol="BTCUSDT",
        timeframe="d",
        kind="retrain",
        preset="default",
        model_bytes=b"point",
        band_bytes=band_bytes,
        config={},
        scaler={},
        details={},
        metrics={},
        libraries={},
        **fields,
    )
    with session_factory(url).begin() as session:
        version = registry.add_version(
            session, new, decision="test", champion_mape_same_window=None
        )
        if champion:
            registry.promote(session, version, "test")
        return version


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def forecast(as_of: int, horizon: int, model: Edges | None, naive: Edges | None) -> dict:
    """A forecast row of median and persistence 100, with its bands (None: without them)."""
    edges = dict(zip(BAND_COLUMNS[:4], model or (), strict=False))
    edges |= dict(zip(BAND_COLUMNS[4:], naive or (), strict=False))
    return {
        "as_of": day(as_of),
        "target_time": day(as_of + horizon),
        "horizon": horizon,
        "predicted_close": 100.0,
        "persistence_close": 100.0,
        **edges,
    }


def candles(closes: dict[datetime, float]) -> pd.DataFrame:
    """Final daily candles whose every price is the close."""
    close = pd.Series(closes, dtype="float64").rename_axis("open_time")
    prices = pd.DataFrame({c: close for c in ("open", "high", "low", "close", "volume_quote")})
    return prices.assign(volume_base=1.0, trade_count=pd.array([1] * len(close), dtype="Int64"))


def expected_scores() -> dict[str, float]:
    """forecast_accuracy's band columns, from tasks/intervals.py on the banded cases."""
    banded = [(y, model, naive) for y, model, naive in CASES if model is not None]
    y = [case[0] for case in banded]
    scores = {}
    for name, column in (("model", 1), ("naive", 2)):
        low95, low80, high80, high95 = zip(*(case[column] for case in banded), strict=True)
        scores[f"{name}_cov80_pct"] = coverage(y, low80, high80)
        scores[f"{name}_cov95_pct"] = coverage(y, low95, high95)
        scores[f"{name}_winkler95_pct"] = winkler(y, low95, high95, alpha=0.05)
    return scores


def test_accuracy_view_scores_the_bands_as_tasks_intervals_does(db_url: str) -> None:
    version = register(db_url, True)
    rows = [forecast(i, 1, model, naive) for i, (_, model, naive) in enumerate(CASES)]
    rows.append(forecast(0, 2, None, None))  # horizon 2: scored, never banded
    with session_factory(db_url).begin() as session:
        forecasts.save_forecasts(session, version, rows)
        closes = {day(i + 1): y for i, (y, _, _) in enumerate(CASES)}
        upsert_candles(
            session, candles(closes), exchange="Binance", symbol="BTCUSDT", timeframe="d"
        )
        assert forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d") == len(rows)
    with session_factory(db_url)() as session:
        accuracy = registry.view_rows(
            session, "forecast_accuracy", order=("horizon", "window_days")
        )
    expected = expected_scores()
    # by hand, of the five banded closes: the model's 80% band holds 100 and 105 (its edge),
    # its 95% band 100, 107 and 105; the naive 80% band 100, 85, 105, its 95% all but 118
    assert (expected["model_cov80_pct"], expected["model_cov95_pct"]) == (40.0, 60.0)
    assert (expected["naive_cov80_pct"], expected["naive_cov95_pct"]) == (60.0, 80.0)
    h1 = [row for row in accuracy if row["horizon"] == 1]
    assert [(r["window_days"], r["n_scored"], r["n_banded"]) for r in h1] == [
        (7, 6, 5),
        (30, 6, 5),
        (90, 6, 5),
    ]
    for row in h1:
        assert {name: row[name] for name in expected} == pytest.approx(expected, rel=1e-12)
    h2 = [row for row in accuracy if row["horizon"] == 2]
    assert [(r["n_scored"], r["n_banded"]) for r in h2] == [(1, 0)] * 3
    assert all(row[name] is None for row in h2 for name in expected)


def test_served_bands_are_the_newest_scored_banded_forecasts_at_one_horizon(db_url: str) -> None:
    version = register(db_url, True)
    rows = [forecast(i, 1, model, naive) for i, (_, model, naive) in enumerate(CASES)]
    rows.append(forecast(0, 2, CASES[0][1], None))  # banded, but two days ahead
    rows.append(forecast(len(CASES), 1, CASES[0][1], None))  # banded, its close not yet known
    with session_factory(db_url).begin() as session:
        forecasts.save_forecasts(session, version, rows)
        closes = {day(i + 1): y for i, (y, _, _) in enumerate(CASES)}
        upsert_candles(
            session, candles(closes), exchange="Binance", symbol="BTCUSDT", timeframe="d"
        )
        forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d")
    with session_factory(db_url)() as session:
        every = forecasts.served_bands(session, "Binance", "BTCUSDT", "d", limit=90)
        newest = forecasts.served_bands(session, "Binance", "BTCUSDT", "d", limit=2)
        other = forecasts.served_bands(session, "Binance", "ETHUSDT", "d", limit=90)
        since = forecasts.served_bands(session, "Binance", "BTCUSDT", "d", 90, since=day(2))
        until = forecasts.served_bands(session, "Binance", "BTCUSDT", "d", 90, until=day(2))
    banded = [(y, *model) for y, model, _ in CASES if model is not None]
    assert every == banded[::-1] and newest == banded[:-3:-1] and other == []
    assert since == banded[:1:-1]  # forecast from day 2 on (as_of >= since)
    assert until == banded[1::-1]  # targets up to day 2: forecast from days 0 and 1


def test_latest_forecasts_show_both_bands_and_null_where_there_is_none(db_url: str) -> None:
    version = register(db_url, True)
    banded = forecast(0, 1, (90.0, 95.0, 105.0, 110.0), (80.0, 90.0, 110.0, 120.0))
    nan = float("nan")  # past the band network's horizon; the naive band left out
    beyond = forecast(0, 2, (nan, nan, nan, nan), None)
    with session_factory(db_url).begin() as session:
        forecasts.save_forecasts(session, version, [banded, beyond])
    with session_factory(db_url)() as session:
        latest = registry.view_rows(session, "latest_forecasts", order=("horizon",))
    assert list(latest[0]) == [
        *("exchange", "symbol", "timeframe", "version", "as_of", "horizon", "target_time"),
        *("predicted_close", "low95", "low80", "high80", "high95"),
        *("persistence_close", "naive_low95", "naive_low80", "naive_high80", "naive_high95"),
        *("created_at", "flow_run_id", "imputed_inputs"),
    ]
    assert [latest[0][column] for column in BAND_COLUMNS] == [banded[c] for c in BAND_COLUMNS]
    assert all(latest[1][column] is None for column in BAND_COLUMNS)


# --- migration 0004 ----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own, which it may migrate down and up."""
    with (
        scratch_postgres_database("candlecast_bands")
        if request.param == "postgresql"
        else nullcontext(f"sqlite:///{tmp_path / 'bands.sqlite'}")
    ) as url:
        yield url
        get_engine(url).dispose()


def schema(url: str) -> dict[str, Any]:
    """Every table's columns (name, type, nullable) and every view's SQL, whitespace aside."""
    inspector = inspect(get_engine(url))
    return {
        "tables": {
            table: [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ]
            for table in inspector.get_table_names()
        },
        "views": {
            view: " ".join(inspector.get_view_definition(view).split())
            for view in inspector.get_view_names()
        },
    }


def downgrade(url: str, revision: str) -> None:
    config = alembic_config(get_engine(url).url.render_as_string(hide_password=False))
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_0004_and_0005_go_down_to_0003_exactly_and_up_again(own_url: str) -> None:
    upgrade(own_url, "0003")
    before = schema(own_url)
    assert upgrade(own_url, "0004") == "0004"
    with_bands = schema(own_url)
    assert upgrade(own_url) == "0005"
    version = register(
        own_url, True, band_bytes=b"bands", served_bytes=b"twin", served_band_bytes=b"twin bands"
    )
    banded = forecast(0, 1, (90.0, 95.0, 105.0, 110.0), (80.0, 90.0, 110.0, 120.0))
    with session_factory(own_url).begin() as session:
        forecasts.save_forecasts(session, version, [banded])
    downgrade(own_url, "0004")
    assert schema(own_url) == with_bands
    downgrade(own_url, "0003")
    assert schema(own_url) == before
    assert upgrade(own_url) == "0005"
    with session_factory(own_url)() as session:
        (row,) = registry.view_rows(session, "latest_forecasts")
        assert row["predicted_close"] == 100.0  # the row stayed, its bands went with 0003
        assert all(row[column] is None for column in BAND_COLUMNS)
        assert registry.view_rows(session, "forecast_accuracy") == []


# --- the band network's bytes -------------------------------------------------------------------


def test_band_bytes_round_trip_and_are_checked(db_url: str) -> None:
    with_bands = register(db_url, True, band_bytes=b"band keras bytes")
    point_only = register(db_url, False)
    assert with_bands.details["bands_sha256"] == hashlib.sha256(b"band keras bytes").hexdigest()
    with session_factory(db_url)() as session:
        assert registry.band_bytes(session, with_bands) == b"band keras bytes"
        assert registry.model_bytes(session, with_bands) == b"point"
        assert registry.band_bytes(session, point_only) is None
    with session_factory(db_url).begin() as session:
        session.execute(
            update(ModelBlob)
            .where(ModelBlob.version_id == with_bands.id)
            .values(bands=b"band keras bytez")
        )
    with (
        session_factory(db_url)() as session,
        pytest.raises(
            registry.TamperedModelError, match="BTCUSDT band network v1: stored bytes have sha256"
        ),
    ):
        registry.band_bytes(session, with_bands)


# --- the served twin's bytes and the leaderboard ------------------------------------------------


def test_served_twin_bytes_round_trip_and_are_checked(db_url: str) -> None:
    twin = register(db_url, True, b"bands", served_bytes=b"twin", served_band_bytes=b"twin bands")
    alone = register(db_url, False, b"bands")
    assert twin.served_sha256 == hashlib.sha256(b"twin").hexdigest()
    with session_factory(db_url)() as session:
        assert registry.served_bytes(session, twin) == (b"twin", b"twin bands")
        assert registry.model_bytes(session, twin) == b"point"
        assert registry.served_bytes(session, alone) is None
    # the band network first: with the point network tampered, its check would speak first
    for column, network in (
        ("served_bands", "served twin v1's band network"),
        ("served", "served twin v1"),
    ):
        with session_factory(db_url).begin() as session:
            session.execute(
                update(ModelBlob).where(ModelBlob.version_id == twin.id).values({column: b"twin!"})
            )
        with (
            session_factory(db_url)() as session,
            pytest.raises(registry.TamperedModelError, match=f"BTCUSDT {network}: stored bytes"),
        ):
            registry.served_bytes(session, twin)


@pytest.mark.parametrize(
    ("reader", "network"),
    [(registry.band_bytes, "band network"), (registry.served_bytes, "served twin")],
)
def test_pruning_takes_every_network_with_the_model_bytes(db_url: str, reader, network) -> None:
    old = register(db_url, False, b"old bands", served_bytes=b"old", served_band_bytes=b"old b")
    register(db_url, True, b"bands", served_bytes=b"new")
    with session_factory(db_url).begin() as session:
        assert [v.version for v in registry.prune(session, keep=0)] == [old.version]
    with (
        session_factory(db_url)() as session,
        pytest.raises(registry.TamperedModelError, match=f"{network} v1: its bytes were pruned"),
    ):
        reader(session, old)


def test_leaderboard_shows_band_scores_and_which_versions_serve(db_url: str) -> None:
    scores = {"test_cov80": 78.5, "test_cov95": 95.25, "test_winkler95": 14.5}
    register(db_url, True, b"bands", served_bytes=b"twin", **scores)
    register(db_url, False)
    with session_factory(db_url)() as session:
        rows = registry.view_rows(session, "model_leaderboard", "BTCUSDT", ("version",))
    assert [{k: r[k] for k in (*scores, "served")} for r in rows] == [
        {**scores, "served": 1},
        {**dict.fromkeys(scores), "served": 0},
    ]
