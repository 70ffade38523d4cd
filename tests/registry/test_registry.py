"""The model registry on SQLite and PostgreSQL: numbering, gate, history, forecasts, prune."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select, update

from db import forecasts, registry
from db.queries import upsert_candles
from db.schema import Forecast, ModelBlob, ModelVersion
from db.session import session_factory
from tasks.intervals import too_narrow
from tasks.registry import TIE_MARGIN, WindowScore, gate, miscalibrated

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def new(
    symbol: str = "BTCUSDT", mape: float = 1.0, persistence: float = 2.0, **kw
) -> registry.NewVersion:
    return registry.NewVersion(
        exchange="Binance",
        symbol=symbol,
        timeframe="d",
        kind=kw.pop("kind", "retrain"),
        preset="tiny",
        model_bytes=kw.pop("model_bytes", os.urandom(64)),
        config={"name": "tiny"},
        scaler={},
        details={},
        metrics={"test": {"mape": mape}},
        libraries={"keras": "3"},
        test_mape=mape,
        test_persistence_mape=persistence,
        test_skill=1 - mape / persistence,
        **kw,
    )


def add(url: str, version: registry.NewVersion, promote: bool, now: datetime) -> ModelVersion:
    with session_factory(url).begin() as session:
        added = registry.add_version(
            session, version, decision="test", champion_mape_same_window=None, now=now
        )
        if promote:
            registry.promote(session, added, "test promotion", now=now)
        return added


# --- the gate (pure) -----------------------------------------------------------------------


def _score(mape: float, persistence: float = 1.8, **bands: float) -> WindowScore:
    return WindowScore(mape, persistence, **bands)


def test_gate_promotes_only_what_beats_persistence_and_the_champion() -> None:
    assert gate(_score(1.5), None).promote  # first to beat persistence
    assert "first version to beat persistence" in gate(_score(1.5), None).reason
    assert gate(_score(1.5), _score(1.6)).promote  # better than champion and persistence
    worse = gate(_score(1.7), _score(1.6))
    assert not worse.promote and "does not beat the champion (1.600%)" in worse.reason
    loser = gate(_score(1.9), None)
    assert not loser.promote and "does not beat persistence" in loser.reason
    assert not gate(None, None).promote


def test_a_tie_within_the_margin_does_not_promote() -> None:
    assert not gate(_score(4.279, 4.279), None).promote  # the "first version" tie
    assert not gate(_score(1.8 * (1 - TIE_MARGIN / 2)), None).promote
    assert gate(_score(1.8 * (1 - 2 * TIE_MARGIN)), None).promote
    assert not gate(_score(1.804), _score(1.804 * (1 + TIE_MARGIN / 2))).promote
    assert gate(_score(1.5), _score(1.5 * (1 + 2 * TIE_MARGIN))).promote


def test_a_fine_tune_of_the_champion_replaces_it_unless_worse() -> None:
    champion = _score(1.6)
    assert gate(_score(1.6 * (1 + TIE_MARGIN / 2)), champion, refresh=True).promote
    worse = gate(_score(1.6 * (1 + 2 * TIE_MARGIN)), champion, refresh=True)
    assert not worse.promote and "a fine-tune worse than the champion" in worse.reason
    assert not gate(_score(1.6 * (1 + TIE_MARGIN / 2)), champion).promote  # a new lineage


def test_bands_must_cover_within_chance_and_not_lose_to_the_champions() -> None:
    calibrated = {"n": 560, "cov80": 79.0, "cov95": 94.5, "winkler95": 14.0}
    assert gate(_score(1.5, **calibrated), None).promote
    narrow = gate(_score(1.5, **{**calibrated, "cov95": 90.0}), None)
    assert not narrow.promote and "its 95% band covers 90.0% of 560 test days" in narrow.reason
    assert miscalibrated(WindowScore(1.5, 1.8, 560, 74.0, 95.0, 14.0)) is not None
    assert miscalibrated(WindowScore(1.5, 1.8, 60, 74.0, 95.0, 14.0)) is None  # few days
    assert miscalibrated(WindowScore(1.5, 1.8, 560, 99.0, 100.0, 30.0)) is None  # wide
    assert too_narrow(560, 74.0, 95.0) == (80, 74.0) and too_narrow(560, 80.0, 90.0) == (95, 90.0)
    assert too_narrow(0, 0.0, 0.0) is None and too_narrow(560, None, None) is None
    champion = _score(1.6, **{**calibrated, "winkler95": 13.0})
    worse = gate(_score(1.5, **calibrated), champion)
    assert not worse.promote and "bands worse than the champion's" in worse.reason
    assert gate(_score(1.5, **calibrated), _score(1.6, **calibrated)).promote


def test_a_new_lineage_is_tested_on_the_served_path_and_a_refresh_is_not() -> None:
    """The static window's bands age over hundreds of days; the walked ones are those that
    would be served, and decide. A refresh answers to the champion's interval score."""
    calibrated = {"n": 250, "cov80": 79.0, "cov95": 94.5, "winkler95": 47.0}
    aged = _score(5.1, 5.2, **{**calibrated, "cov80": 70.0})
    assert miscalibrated(aged) is not None
    walked = gate(aged, None, walked=_score(5.1, 5.2, **calibrated))
    assert walked.promote and "served path walked: 80% and 95% bands cover 79.0%" in walked.reason
    narrow = gate(_score(5.1, 5.2, **calibrated), None, walked=aged)
    assert not narrow.promote
    assert "not calibrated on the served path: its 80% band covers 70.0%" in narrow.reason
    champion = _score(5.15, 5.2, **calibrated)
    assert gate(aged, champion, refresh=True).promote
    assert not gate(aged, champion).promote  # a new lineage without a walk: the static window


# --- numbering ---------------------------------------------------------------------------

REGISTER_SCRIPT = """
import os, sys
from db import registry
from db.session import session_factory
url, n = sys.argv[1], int(sys.argv[2])
sessions = session_factory(url)
for _ in range(n):
    with sessions.begin() as session:
        v = registry.add_version(session, registry.NewVersion(
            exchange="Binance", symbol="BTCUSDT", timeframe="d", kind="retrain", preset="tiny",
            model_bytes=os.urandom(32), config={}, scaler={}, details={}, metrics={},
            libraries={}), decision="race", champion_mape_same_window=None)
    print(v.version, flush=True)
"""


def test_two_processes_registering_at_once_get_consecutive_numbers(db_url: str) -> None:
    per_process = 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_SCRIPT, db_url, str(per_process)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    numbers = [int(line) for out, _ in outputs for line in out.split()]
    assert sorted(numbers) == list(range(1, 2 * per_process + 1))
    with session_factory(db_url)() as session:
        stored = sorted(session.scalars(select(ModelVersion.version)))
        blobs = session.scalar(select(func.count()).select_from(ModelBlob))
    assert stored == list(range(1, 2 * per_process + 1)) and blobs == 2 * per_process


def test_numbers_are_per_series_and_a_rollback_leaves_no_gap(db_url: str) -> None:
    assert add(db_url, new("BTCUSDT"), False, T0).version == 1
    assert add(db_url, new("ETHUSDT"), False, T0).version == 1
    with pytest.raises(RuntimeError), session_factory(db_url).begin() as session:
        registry.add_version(session, new("BTCUSDT"), decision="x", champion_mape_same_window=None)
        raise RuntimeError("crash before commit")
    assert add(db_url, new("BTCUSDT"), False, T0).version == 2


# --- champion and its history -------------------------------------------------------------


def test_champion_history_answers_point_in_time_questions(db_url: str) -> None:
    add(db_url, new(mape=2.5), False, T0)  # v1 loses: no champion
    add(db_url, new(mape=1.5), True, T0 + timedelta(days=1))  # v2 champion from day 1
    add(db_url, new(mape=1.7), False, T0 + timedelta(days=2))  # v3 candidate
    add(db_url, new(mape=1.2), True, T0 + timedelta(days=5))  # v4 champion from day 5
    with session_factory(db_url)() as session:
        at = lambda days: registry.champion_at(  # noqa: E731
            session, "Binance", "BTCUSDT", "d", T0 + timedelta(days=days)
        )
        assert [at(0), at(1), at(3), at(4.99), at(5), at(30)] == [None, 2, 2, 2, 4, 4]
        assert registry.champion(session, "Binance", "BTCUSDT", "d").version == 4
        history = registry.view_rows(session, "champion_history", order=("valid_from",))
        board = registry.view_rows(session, "model_leaderboard", order=("version",))
    assert [(h["version"], h["valid_to"] is None) for h in history] == [(2, False), (4, True)]
    assert [b["is_champion"] for b in board] == [0, 0, 0, 1]
    assert [b["status"] for b in board] == ["candidate", "promoted", "candidate", "promoted"]


def test_the_version_that_saw_the_newest_candle_is_found_by_its_data(db_url: str) -> None:
    day = lambda d: T0 + timedelta(days=d)  # noqa: E731
    add(db_url, new(data_end=day(10)), True, day(10))  # v1: the daily run
    add(db_url, new(data_end=day(8)), False, day(11))  # v2, v3: a backfill of older days
    add(db_url, new(data_end=day(9)), False, day(11))
    add(db_url, new(data_end=None), False, day(11))  # v4: no data range recorded
    add(db_url, new(data_end=day(7), kind="fine_tune"), False, day(11))  # v5
    with session_factory(db_url)() as session:

        def found(symbol: str = "BTCUSDT", **kw: object) -> int | None:
            version = registry.latest_version(session, "Binance", symbol, "d", **kw)
            return None if version is None else version.version

        assert found() == 5 and found(by="data_end") == 1 and found(kind="retrain") == 4
        assert found(kind="fine_tune") == 5
        assert found(by="data_end", data_until=day(9)) == 3
        assert found("ETHUSDT", by="data_end") is None


def test_fine_tune_parent_is_shown_in_the_leaderboard(db_url: str) -> None:
    parent = add(db_url, new(mape=1.5), True, T0)
    add(db_url, new(mape=1.4, kind="fine_tune", parent_id=parent.id), True, T0 + timedelta(days=1))
    with session_factory(db_url)() as session:
        board = registry.view_rows(session, "model_leaderboard", order=("version",))
    assert [(b["version"], b["kind"], b["parent_version"]) for b in board] == [
        (1, "retrain", None),
        (2, "fine_tune", 1),
    ]


# --- bytes ----------------------------------------------------------------------------------


def test_tampered_model_bytes_are_refused(db_url: str) -> None:
    version = add(db_url, new(model_bytes=b"original keras bytes"), True, T0)
    with session_factory(db_url)() as session:
        assert registry.model_bytes(session, version) == b"original keras bytes"
    with session_factory(db_url).begin() as session:
        session.execute(update(ModelBlob).values(data=b"original keras bytez"))
    with (
        session_factory(db_url)() as session,
        pytest.raises(
            registry.TamperedModelError, match="BTCUSDT model v1: stored bytes have sha256"
        ),
    ):
        registry.model_bytes(session, version)


def test_prune_keeps_champions_former_champions_and_forecast_sources(db_url: str) -> None:
    v1 = add(db_url, new(), True, T0)  # former champion
    v2 = add(db_url, new(), False, T0)  # candidate with forecasts
    v3 = add(db_url, new(), False, T0)  # plain old candidate: prunable
    v4 = add(db_url, new(), True, T0 + timedelta(days=1))  # champion
    v5 = add(db_url, new(), False, T0)  # newest, kept by --keep 1
    with session_factory(db_url).begin() as session:
        forecasts.save_forecasts(session, v2, [_row(T0, 1, 100.0, 99.0)])
    with session_factory(db_url).begin() as session:
        pruned = registry.prune(session, keep=1)
    assert [p.version for p in pruned] == [3]
    with session_factory(db_url)() as session:
        kept = set(session.scalars(select(ModelBlob.version_id)))
        assert kept == {v1.id, v2.id, v4.id, v5.id}
        with pytest.raises(registry.TamperedModelError, match="pruned"):
            registry.model_bytes(session, v3)
    with session_factory(db_url).begin() as session:
        assert [p.version for p in registry.prune(session, keep=0)] == [5]
    with session_factory(db_url)() as session:
        assert set(session.scalars(select(ModelBlob.version_id))) == {v1.id, v2.id, v4.id}


# --- forecasts and their realized accuracy ---------------------------------------------------


def _row(as_of: datetime, horizon: int, predicted: float, persistence: float) -> dict:
    return {
        "as_of": as_of,
        "target_time": as_of + timedelta(days=horizon),
        "horizon": horizon,
        "predicted_close": predicted,
        "persistence_close": persistence,
    }


def _candles(closes: dict[datetime, float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(list(closes), name="open_time")
    close = pd.Series(list(closes.values()), index=index, dtype="float64")
    return pd.DataFrame(
        {
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume_base": 1.0,
            "volume_quote": close,
            "trade_count": pd.array([1] * len(close), dtype="Int64"),
        }
    )


def test_rerunning_a_day_adds_no_forecast_rows(db_url: str) -> None:
    version = add(db_url, new(), True, T0)
    rows = [_row(T0, h, 100.0 + h, 100.0) for h in (1, 2, 3)]
    with session_factory(db_url).begin() as session:
        assert forecasts.save_forecasts(session, version, rows, flow_run_id="run-1") == 3
    with session_factory(db_url).begin() as session:
        assert forecasts.save_forecasts(session, version, rows, flow_run_id="run-2") == 0
    with session_factory(db_url)() as session:
        assert session.scalar(select(func.count()).select_from(Forecast)) == 3
        assert set(session.scalars(select(Forecast.flow_run_id))) == {"run-1"}


def test_realized_accuracy_equals_hand_computed_mape(db_url: str) -> None:
    version = add(db_url, new(), True, T0)
    day = lambda n: T0 + timedelta(days=n)  # noqa: E731
    with session_factory(db_url).begin() as session:
        # as of day 0 (close 100): horizon 1 -> day 1, horizon 2 -> day 2
        forecasts.save_forecasts(
            session, version, [_row(day(0), 1, 104.0, 100.0), _row(day(0), 2, 95.0, 100.0)]
        )
        # as of day 1 (close 110): horizon 1 -> day 2
        forecasts.save_forecasts(session, version, [_row(day(1), 1, 108.0, 110.0)])
        upsert_candles(
            session,
            _candles({day(0): 100.0, day(1): 110.0}),
            exchange="Binance",
            symbol="BTCUSDT",
            timeframe="d",
        )
        assert forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d") == 1  # day 2 not yet
        upsert_candles(
            session, _candles({day(2): 120.0}), exchange="Binance", symbol="BTCUSDT", timeframe="d"
        )
        assert forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d") == 2
        assert forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d") == 0
    with session_factory(db_url)() as session:
        rows = registry.view_rows(session, "forecast_accuracy", order=("horizon", "window_days"))
        latest = registry.view_rows(session, "latest_forecasts", order=("horizon",))
    # horizon 1: |104-110|/110 and |108-120|/120 -> model (5.4545 + 10) / 2 = 7.7273 %
    #            persistence |100-110|/110 and |110-120|/120 -> (9.0909 + 8.3333) / 2 = 8.7121 %
    h1 = [r for r in rows if r["horizon"] == 1]
    assert [r["window_days"] for r in h1] == [7, 30, 90]
    assert all(r["n_scored"] == 2 for r in h1)
    assert h1[0]["model_mape_pct"] == pytest.approx((6 / 110 + 12 / 120) / 2 * 100)
    assert h1[0]["persistence_mape_pct"] == pytest.approx((10 / 110 + 10 / 120) / 2 * 100)
    h2 = [r for r in rows if r["horizon"] == 2]
    assert h2[0]["n_scored"] == 1
    assert h2[0]["model_mape_pct"] == pytest.approx(25 / 120 * 100)
    # the champion's newest forecast run (as of day 1) holds horizon 1 only
    assert [(r["horizon"], r["predicted_close"]) for r in latest] == [(1, 108.0)]


def test_accuracy_windows_count_only_recent_targets(db_url: str) -> None:
    version = add(db_url, new(), True, T0)
    days = [0, 50, 80, 85, 88]  # relative to T0; the newest scored target is day 89
    with session_factory(db_url).begin() as session:
        forecasts.save_forecasts(
            session, version, [_row(T0 + timedelta(days=d), 1, 100.0, 100.0) for d in days]
        )
        upsert_candles(
            session,
            _candles({T0 + timedelta(days=d + 1): 101.0 for d in days}),
            exchange="Binance",
            symbol="BTCUSDT",
            timeframe="d",
        )
        forecasts.score_forecasts(session, "Binance", "BTCUSDT", "d")
    with session_factory(db_url)() as session:
        rows = registry.view_rows(session, "forecast_accuracy", order=("window_days",))
    # targets: days 1, 51, 81, 86, 89; last 7 days before 89: 86, 89; last 30: 81, 86, 89
    assert [(r["window_days"], r["n_scored"]) for r in rows] == [(7, 2), (30, 3), (90, 5)]
