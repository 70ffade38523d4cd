"""A daily step with no candle newer than the newest a version saw makes no new version: it
says so and serves the champion's forecasts; a retrain asked for, or a new candle, trains."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.schema import Forecast, ModelVersion
from db.session import session_factory
from tasks.daily import forecast_symbol
from tests.conftest import settings_for, wavy_cdd_csv

pytestmark = pytest.mark.slow


def _mirror(tmp_path: Path, end: str, days: int) -> Path:
    """A mirror of the learnable WAVEUSDT file ending on ``end``; the same seed, so a day more
    adds one candle and changes none."""
    folder = tmp_path / end
    folder.mkdir()
    (folder / "Binance_WAVEUSDT_d.csv").write_bytes(wavy_cdd_csv(days=days, end=end))
    return folder


def _stored(url: str) -> tuple[list[tuple[int, str, int | None]], int]:
    """(version, kind, parent version) of each version, and how many forecasts are stored."""
    with session_factory(url)() as session:
        versions = session.execute(
            select(ModelVersion.version, ModelVersion.kind, ModelVersion.parent_id).order_by(
                ModelVersion.version
            )
        ).all()
        count = session.scalar(select(func.count()).select_from(Forecast))
    return [tuple(v) for v in versions], int(count or 0)


def test_the_same_data_twice_keeps_the_version_and_serves_its_forecasts(
    db_url: str, tmp_path: Path
) -> None:
    settings = settings_for(db_url, str(_mirror(tmp_path, "2025-10-13", 400)), tmp_path)
    first = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=3, settings=settings)
    assert first.version == 1 and first.promoted
    for mode in ("auto", "fine_tune"):
        again = forecast_symbol.fn(
            "WAVEUSDT", preset="tiny", horizon=3, mode=mode, settings=settings
        )
        assert again.action == "kept" and again.version is None and not again.promoted
        assert again.decision == "no new candle since v1 (2025-10-13): kept v1"
        assert again.ingest == {"inserted": 0, "updated": 0, "rows_parsed": 400}
        assert again.champion_version == 1 and again.forecasts_new == 0
        assert [f["target_time"] for f in again.forecasts] == [
            f["target_time"] for f in first.forecasts
        ]
        assert [f["predicted_close"] for f in again.forecasts] == pytest.approx(
            [f["predicted_close"] for f in first.forecasts]
        )
        assert again.test_mape == pytest.approx(first.test_mape)  # the kept version's figures
        assert "train" not in again.timings and again.train_seconds == 0.0
    assert _stored(db_url) == ([(1, "retrain", None)], 3)


def test_a_retrain_asked_for_or_a_new_candle_still_makes_a_version(
    db_url: str, tmp_path: Path
) -> None:
    day1 = settings_for(db_url, str(_mirror(tmp_path, "2025-10-13", 400)), tmp_path)
    assert forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, settings=day1).version == 1
    asked = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, mode="retrain", settings=day1)
    assert asked.action == "retrain" and asked.version == 2
    day2 = settings_for(db_url, str(_mirror(tmp_path, "2025-10-14", 401)), tmp_path)
    newer = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, settings=day2)
    assert newer.ingest is not None and newer.ingest["inserted"] == 1
    assert newer.action == "fine_tune" and newer.version == 3
    versions, _ = _stored(db_url)
    assert [v[:2] for v in versions] == [(1, "retrain"), (2, "retrain"), (3, "fine_tune")]
    assert versions[2][2] is not None  # fine-tuned from the champion


def test_without_ingest_the_stored_candles_decide(db_url: str, tmp_path: Path) -> None:
    """A backfill's day that a version already covers makes none (as_of cuts the candles)."""
    settings = settings_for(db_url, str(_mirror(tmp_path, "2025-10-13", 400)), tmp_path)
    forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=1, settings=settings)
    as_of = datetime(2025, 10, 13, tzinfo=UTC)
    covered = forecast_symbol.fn(
        "WAVEUSDT", preset="tiny", horizon=1, as_of=as_of, ingest=False, settings=settings
    )
    assert covered.action == "kept" and covered.ingest is None
    assert covered.decision == "no new candle since v1 (2025-10-13): kept v1"
    assert len(covered.forecasts) == 1 and covered.forecasts_new == 0  # the day's, once
    assert _stored(db_url)[0] == [(1, "retrain", None)]
