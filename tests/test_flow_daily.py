"""The daily pipeline, its one-symbol flow and the backfill as Prefect flows, on SQLite and
PostgreSQL, with the tiny preset and CDD files served on 127.0.0.1."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.client.schemas.objects import State
from pydantic import ValidationError
from sqlalchemy import func, select

from candlecast.core.settings import Settings
from db import forecasts, registry
from db.queries import load_candles
from db.schema import Forecast, ModelVersion
from db.session import session_factory
from flows.daily import _outcome_and_cause, backfill, daily_forecast, forecast_one
from models import presets
from tasks.daily import _note_served, forecast_symbol
from tasks.forecast import forecast
from tasks.intervals import served_coverage
from tasks.outcome import SymbolOutcome
from tasks.registry import load_trained
from tasks.report import plots_key
from tests.conftest import settings_for

pytestmark = pytest.mark.slow


def test_daily_run_forecasts_with_a_champion_and_is_idempotent(prefect_env: Settings) -> None:
    url = prefect_env.sqlalchemy_url()
    (wave,) = daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=3)
    assert wave.action == "retrain" and wave.version == 1 and wave.promoted
    assert wave.champion_version == 1 and [f["horizon"] for f in wave.forecasts] == [1, 2, 3]
    assert wave.test_mape < wave.persistence_mape
    with session_factory(url)() as session:
        latest = registry.view_rows(session, "latest_forecasts", "WAVEUSDT", ("horizon",))
    assert [(r["version"], r["horizon"]) for r in latest] == [(1, 1), (1, 2), (1, 3)]
    assert latest[0]["predicted_close"] == pytest.approx(wave.forecasts[0]["predicted_close"])
    # the forecast is the served twin's: v1 refitted on every candle, its test part included
    with session_factory(url)() as session:
        champion = registry.champion(session, "Binance", "WAVEUSDT", "d")
        trained = load_trained(session, champion)
        evaluation_only = load_trained(session, champion, served=False)
        frame = load_candles(session, "Binance", "WAVEUSDT", "d")
    twin = trained.served
    assert evaluation_only.served is None and evaluation_only.model_bytes == trained.model_bytes
    assert champion.served_sha256 is not None and twin.data_range["test_start"] is None
    assert champion.test_start is not None and champion.test_cov95 is not None
    # the gate tested the bands on the test window walked along the served path
    walk = champion.metrics["walk"]
    assert walk["every_days"] == 7 and walk["n"] == champion.metrics["test"]["n"]
    assert "served path walked" in champion.decision and wave.timings["walk"] > 0
    served = forecast(twin, frame, horizon=3)["close"].to_numpy()
    assert [f["predicted_close"] for f in wave.forecasts] == pytest.approx(served, rel=1e-9)
    # run again with no new candle: no new version, v1's forecasts served, none stored twice
    state = daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=3, return_state=True)
    (again,) = state.result()
    assert state.is_completed() and again.action == "kept" and again.version is None
    assert again.decision == "no new candle since v1 (2025-10-14): kept v1"
    assert again.champion_version == 1 and len(again.forecasts) == 3 and again.forecasts_new == 0
    with session_factory(url)() as session:
        versions = session.scalars(select(ModelVersion.version)).all()
        count = session.scalar(select(func.count()).select_from(Forecast))
    assert versions == [1] and count == 3
    summary = Artifact.get("daily-summary")
    assert summary is not None and "| WAVEUSDT | 2025-10-14 | kept | none | v1 |" in summary.data
    # a retrain on the same candles ties v1: the walk could not make it champion, so none runs
    (tie,) = daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=3, mode="retrain")
    assert tie.version == 2 and not tie.promoted and "does not beat the champion" in tie.decision
    assert "walk" not in tie.timings
    with session_factory(url)() as session:
        v2 = registry.latest_version(session, "Binance", "WAVEUSDT", "d")
    assert v2.version == 2 and "walk" not in v2.metrics


def test_losing_model_is_reported_not_served(prefect_env: Settings) -> None:
    (btc,) = daily_forecast(symbols=["BTCUSDT"], preset="tiny", horizon=2)
    assert not btc.promoted and btc.champion_version is None and btc.forecasts == []
    assert "does not beat persistence" in btc.decision
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        (version,) = session.scalars(select(ModelVersion)).all()
    assert version.served_sha256 is None  # it does not serve: no twin was trained
    assert any("no version beats persistence" in w for w in btc.warnings)
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        (status,) = registry.view_rows(session, "series_status", "BTCUSDT")
    assert status["champion_version"] is None and "forecasts are not served" in status["note"]


def test_failing_symbol_keeps_the_others_and_fails_the_run(prefect_env: Settings) -> None:
    state = daily_forecast(
        symbols=["NOPEUSDT", "WAVEUSDT"], preset="tiny", horizon=2, return_state=True
    )
    assert state.is_failed()
    assert state.message.startswith("NOPEUSDT: HTTP 404")  # the symbol named once
    (wave,) = state.result(raise_on_failure=False)  # the completed symbol's outcome is kept
    assert wave.symbol == "WAVEUSDT" and wave.forecasts
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        symbols = set(session.scalars(select(Forecast.symbol)))
    assert symbols == {"WAVEUSDT"}


def test_run_attaches_summary_forecast_table_and_plots(prefect_env: Settings) -> None:
    state = daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=2, return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    summary = Artifact.get("daily-summary")
    assert summary is not None and summary.flow_run_id == flow_run_id
    assert (
        "| WAVEUSDT |" in summary.data
        and "plots: artifact `plots-binance-waveusdt`" in summary.data
    )
    table = Artifact.get("daily-forecasts")
    assert table is not None and "predicted_close" in table.data
    # the plots are the symbol's own artifact, made by its task run, in the flow run's tab
    plots = Artifact.get("plots-binance-waveusdt")
    assert plots is not None and plots.flow_run_id == flow_run_id
    assert plots.task_run_id is not None and plots.data.count("data:image/png;base64,") == 5
    written = sorted(prefect_env.reports_dir.glob("WAVEUSDT/v1/*.png"))
    expected = ["calibration", "fan_chart", "fit_test", "fit_train", "history"]
    assert [p.name for p in written] == [f"{name}.png" for name in expected]
    assert not any(str(p.parent) in plots.data for p in written)  # no server paths


@pytest.mark.parametrize("policy", ["promoted", "none"])
def test_plots_policy_draws_only_the_versions_it_covers(
    sqlite_db: str, mirror_dir: Path, tmp_path: Path, policy: str
) -> None:
    settings = settings_for(sqlite_db, str(mirror_dir), tmp_path).model_copy(
        update={"plots": policy}
    )
    wave = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, settings=settings)
    btc = forecast_symbol.fn("BTCUSDT", preset="tiny", horizon=2, settings=settings)
    assert wave.promoted and not btc.promoted  # a new champion, and a version that loses
    drawn = sorted(str(p.relative_to(settings.reports_dir)) for p in tmp_path.rglob("*.png"))
    if policy == "promoted":
        names = ("calibration", "fan_chart", "fit_test", "fit_train", "history")
        assert drawn == [f"WAVEUSDT/v1/{n}.png" for n in names]
        assert len(wave.plots) == 5 and "plots" in wave.timings
    else:
        assert drawn == [] and wave.plots == [] and "plots" not in wave.timings
    assert btc.plots == [] and "plots" not in btc.timings
    assert wave.forecasts and btc.version == 1  # the rest of the step is unchanged


def test_plots_policy_rejects_an_unknown_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANDLECAST_PLOTS", "some")
    with pytest.raises(ValidationError, match="plots"):
        Settings()


@pytest.mark.parametrize(
    ("exchange", "symbol", "key"),
    [
        ("Binance", "BTCUSDT", "plots-binance-btcusdt"),
        ("Bit.Stamp", "BTC_USD", "plots-bit-stamp-btc-usd"),
    ],
)
def test_plots_key_is_a_valid_prefect_artifact_key(exchange: str, symbol: str, key: str) -> None:
    assert plots_key(exchange, symbol) == key


def test_backfill_uses_only_past_data_and_is_idempotent(prefect_env: Settings) -> None:
    daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=1)  # ingest + first model
    outcomes = backfill(
        "WAVEUSDT", date(2025, 10, 10), date(2025, 10, 12), preset="tiny", horizon=1
    )
    assert [o.as_of[:10] for o in outcomes] == ["2025-10-10", "2025-10-11", "2025-10-12"]
    assert all(o.rows < 400 for o in outcomes)  # cut at each day: no look-ahead
    assert [o.rows for o in outcomes] == [396, 397, 398]
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        rows = session.execute(
            select(Forecast.as_of, ModelVersion.data_end)
            .join(ModelVersion, ModelVersion.id == Forecast.version_id)
            .where(ModelVersion.version > 1)
        ).all()
    assert rows and all(data_end <= as_of for as_of, data_end in rows)  # no model from the future
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        served = forecasts.served_bands(session, "Binance", "WAVEUSDT", "d", limit=90)
    assert served and outcomes[-1].served == served_coverage(served)  # the report's figures
    again = backfill("WAVEUSDT", date(2025, 10, 10), date(2025, 10, 12), preset="tiny", horizon=1)
    assert again == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its SQL: test_bands_sql
def test_auto_retrains_once_the_bands_served_since_the_last_retrain_were_too_narrow(
    prefect_env: Settings,
) -> None:
    daily_forecast(symbols=["WAVEUSDT"], preset="tiny", horizon=1)  # ingest + first model
    days = backfill("WAVEUSDT", date(2025, 10, 6), date(2025, 10, 9), preset="tiny", horizon=1)
    reason = "band served since the last retrain covered"
    assert days[0].action == "retrain" and not any(reason in o.decision for o in days)
    url = prefect_env.sqlalchemy_url()
    with session_factory(url).begin() as session:  # every band since that retrain missed
        since, until = (datetime.fromisoformat(o.as_of) for o in (days[0], days[-1]))
        served = select(Forecast).where(Forecast.as_of.between(since, until), Forecast.horizon == 1)
        missed = session.scalars(served).all()
        for row in missed:
            row.low95 = row.low80 = row.high80 = row.high95 = 2 * row.realized_close
    assert len(missed) == 4
    (narrow,) = backfill(
        "WAVEUSDT", date(2025, 10, 10), date(2025, 10, 10), preset="tiny", horizon=1
    )
    assert narrow.action == "retrain"
    assert narrow.decision.startswith(
        "the 80% band served since the last retrain covered 0.0% of 4 days, further below"
    )
    # the misses before that retrain ask for no other: its own bands start the count again
    (after,) = backfill(
        "WAVEUSDT", date(2025, 10, 11), date(2025, 10, 11), preset="tiny", horizon=1
    )
    assert after.action == "fine_tune" and reason not in after.decision


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # flows only: no new SQL
def test_symbol_flow_persists_its_outcome_for_the_parent_also_when_it_fails(
    prefect_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.results import ResultRecordMetadata

    def as_the_parent_reads_it(
        state: State, elsewhere: bool = False
    ) -> tuple[SymbolOutcome | None, str | None]:
        """Through the API and the persisted JSON, as daily_forecast(runner="deployments")
        does; ``elsewhere``: on a machine that does not share the result storage."""
        with get_client(sync_client=True) as client:
            flow_run = client.read_flow_run(state.state_details.flow_run_id)
        assert flow_run.state is not None
        assert isinstance(flow_run.state.data, ResultRecordMetadata)
        if elsewhere:
            Path(str(flow_run.state.data.storage_key)).unlink()
        return _outcome_and_cause("WAVEUSDT", flow_run.state)

    first = forecast_one("WAVEUSDT", preset="tiny", horizon=2, return_state=True)
    outcome, cause = as_the_parent_reads_it(first)
    assert first.is_completed() and cause is None
    assert outcome is not None and outcome.version == 1 and outcome.promoted
    assert [f["horizon"] for f in outcome.forecasts] == [1, 2]
    assert as_the_parent_reads_it(first, elsewhere=True) == (None, None)  # left out, not failed

    exploding = presets.preset("tiny").replace(learning_rate=1e30, clipping="none")
    monkeypatch.setitem(presets.PRESETS, "tiny", exploding)
    rejected = forecast_one("WAVEUSDT", preset="tiny", horizon=2, mode="retrain", return_state=True)
    outcome, cause = as_the_parent_reads_it(rejected)
    assert rejected.is_failed() and cause == rejected.message
    assert cause is not None and "training loss became" in cause
    assert outcome is not None and outcome.action == "rejected" and outcome.error == cause
    assert outcome.champion_version == 1 and len(outcome.forecasts) == 2  # still served
    assert as_the_parent_reads_it(rejected, elsewhere=True) == (None, rejected.message)

    missing = forecast_one("NOPEUSDT", preset="tiny", horizon=2, return_state=True)
    outcome, cause = as_the_parent_reads_it(missing)
    assert missing.is_failed() and outcome is None
    assert cause == missing.message and cause is not None and "NOPEUSDT: HTTP 404" in cause


@pytest.mark.parametrize(
    ("inside80", "warned"), [(72, False), (54, True)], ids=["calibrated", "too narrow"]
)
def test_served_bands_too_narrow_for_chance_are_warned_about(inside80: int, warned: bool) -> None:
    band = (90.0, 95.0, 105.0, 110.0)  # low95, low80, high80, high95
    rows = [(100.0, *band)] * inside80 + [(107.0, *band)] * (90 - inside80)  # inside the 95%
    outcome = SymbolOutcome("Binance", "BTCUSDT", "d", "2025-10-13", 2981, None, "kept", "")
    _note_served(outcome, rows)
    assert outcome.served == {"n": 90, "cov80": 100 * inside80 / 90, "cov95": 100.0}
    expected = "BTCUSDT: the served 80% band covered 60.0% of the last 90 days, further below"
    assert [w.startswith(expected) for w in outcome.warnings] == ([True] if warned else [])
