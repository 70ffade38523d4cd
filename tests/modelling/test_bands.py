"""The band network: its samples never look ahead, its calibration is the residuals' levels,
and the forecast's bands are ordered quantiles around the point forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models import lstm
from models.presets import preset
from tasks.bands import (
    LONG_RUN_RETURNS,
    MIN_CALIBRATION,
    RECALIBRATION_ORIGINS,
    VOLATILITY_COLUMNS,
    band_samples,
    calibrate,
    centred_levels,
    conformal_levels,
    long_run_variance,
    recent_offsets,
    volatility_frame,
)
from tasks.forecast import forecast, raw_windows, recursive_closes
from tasks.intervals import BAND_LEVELS, MIN_RETURNS, band_scores, coverage, pinball, winkler
from tasks.prepare import ScalerParams, latest_window, split_bounds, to_price
from tasks.train import fine_tune, train_model
from tests.modelling.conftest import make_candles, wavy_closes

TINY = preset("tiny")


def _volatile_closes(n: int, seed: int = 1) -> np.ndarray:
    """Calm and wild stretches of 40 days in turn: volatility clusters."""
    rng = np.random.default_rng(seed)
    spread = np.where((np.arange(n) // 40) % 2 == 0, 0.01, 0.05)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, spread)))


def _identity_scaler() -> ScalerParams:
    return ScalerParams(VOLATILITY_COLUMNS, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_band_targets_are_log_changes_that_stop_at_gaps_and_part_ends():
    frame = make_candles(wavy_closes(60), drop=[30])
    config = TINY.replace(band_horizon=3, band_window=4)
    samples = band_samples(frame, config, _identity_scaler(), 0.5, "d", bounds=(40, 50))
    close = np.log(frame["close"].to_numpy())
    segments = (frame.index.to_series().diff() != pd.Timedelta("1D")).cumsum().to_numpy()
    for i, t in enumerate(samples.origin):
        assert segments[t - 3] == segments[t + 1]  # the window and the first target: one run
        limit = 40 if t + 1 < 40 else 50 if t + 1 < 50 else len(frame)
        for h in range(1, 4):
            known = t + h < limit and t + h < len(frame) and segments[t + h] == segments[t]
            if known:
                assert samples.y[i, h - 1] == pytest.approx((close[t + h] - close[t]) / 0.5)
            else:
                assert np.isnan(samples.y[i, h - 1])
    assert np.isnan(samples.y).any() and np.isfinite(samples.y).any()


def test_volatility_inputs_are_the_return_its_size_and_the_range():
    frame = make_candles(wavy_closes(20), drop=[10])
    inputs = volatility_frame(frame, "d")
    r = np.log(frame["close"]).diff()
    assert np.isnan(inputs["log_return"].iloc[0]) and np.isnan(inputs["log_return"].iloc[10])
    np.testing.assert_allclose(inputs["log_return"].iloc[11:], r.iloc[11:])
    np.testing.assert_allclose(inputs["abs_return"].iloc[11:], r.abs().iloc[11:])
    np.testing.assert_allclose(inputs["log_range"], np.log(frame["high"] / frame["low"]))


def test_calibration_reads_the_levels_of_the_standardized_residuals():
    rng = np.random.default_rng(0)
    n = MIN_CALIBRATION + 30
    y = rng.standard_t(3, (n, 2))
    y[:40, 1] = np.nan  # the second horizon has too few residuals: the Gaussian's levels stand
    offsets, counts = calibrate(y / 2.0)
    np.testing.assert_allclose(offsets[0], _halfway(y[:, 0] / 2.0))
    assert counts == (n, 0)
    np.testing.assert_allclose(offsets[1], stats.norm.ppf(BAND_LEVELS))


def test_conformal_levels_are_the_finite_sample_ranks():
    z = np.random.default_rng(0).standard_t(3, MIN_CALIBRATION + 30)
    n, ranked = z.size, np.sort(z)
    for level, value in zip(BAND_LEVELS, conformal_levels(z, np.asarray(BAND_LEVELS)), strict=True):
        # at least a share `level` of (n + 1) lies at or below an upper level's value
        rank = np.ceil((n + 1) * level) if level > 0.5 else np.floor((n + 1) * level)
        assert value == ranked[int(rank) - 1]


def test_the_bands_never_see_the_test_part():
    closes = _volatile_closes(300)
    frame = make_candles(closes)
    b = split_bounds(len(frame), TINY.val_fraction, TINY.test_fraction)[1]
    changed = closes.copy()
    changed[b:] *= np.exp(np.random.default_rng(5).normal(0, 0.3, len(closes) - b))
    first, second = (
        train_model(make_candles(c), TINY, track_price_mape=False).bands for c in (closes, changed)
    )
    assert first.offsets == second.offsets
    assert first.scaler == second.scaler and first.return_scale == second.return_scale
    samples = band_samples(frame, TINY, first.scaler, first.return_scale, "d")
    np.testing.assert_array_equal(
        first.sigma(samples.x, samples.long_run), second.sigma(samples.x, samples.long_run)
    )


def test_a_forecast_carries_ordered_bands_around_its_median_up_to_the_band_horizon():
    frame = make_candles(_volatile_closes(300))
    trained = train_model(frame, TINY, track_price_mape=False)
    assert trained.bands is not None and trained.bands.horizon == TINY.band_horizon
    out = forecast(trained, frame, horizon=5)
    banded = out.iloc[: TINY.band_horizon]
    for low, high in (("low95", "low80"), ("low80", "close"), ("close", "high80")):
        assert (banded[low] < banded[high]).all()
    assert (banded["high80"] < banded["high95"]).all()
    assert out.iloc[TINY.band_horizon :][["low95", "high95"]].isna().all().all()
    scores = trained.metrics["test"]["bands"]
    assert scores["model"]["n"][0] == trained.metrics["test"]["n"]
    assert set(scores) == {"model", "naive", "garch"} and len(scores["model"]["cov95"]) == 3
    garch = scores["garch"]  # every horizon, on the same origins
    assert garch["n"] == scores["model"]["n"] and None not in garch["cov95"]
    assert all(0 <= p <= 1 for p in garch["winkler95_p"] + garch["pinball_p"])
    assert 0 <= scores["naive"]["pinball_p"][2] <= 1


def test_a_point_only_model_forecasts_without_bands(wavy_frame):
    trained = train_model(wavy_frame, TINY.replace(band_horizon=0), track_price_mape=False)
    assert trained.bands is None and "bands" not in trained.metrics["test"]
    out = forecast(trained, wavy_frame, horizon=2)
    assert out[["low95", "low80", "high80", "high95"]].isna().all().all()


def test_a_fine_tune_moves_the_band_network_and_keeps_its_calibration():
    frame = make_candles(_volatile_closes(300))
    trained = train_model(frame, TINY, track_price_mape=False)
    tuned = fine_tune(trained, frame, epochs=1, track_price_mape=False)
    assert tuned.bands.offsets == trained.bands.offsets
    assert set(tuned.metrics["test"]["bands"]) == {"model", "naive"}  # GARCH-t: its retrain's
    assert tuned.bands.scaler == trained.bands.scaler
    samples = band_samples(frame, TINY, trained.bands.scaler, trained.bands.return_scale, "d")
    inputs = samples.x, samples.long_run
    assert not np.array_equal(tuned.bands.sigma(*inputs), trained.bands.sigma(*inputs))


def test_the_long_run_variance_is_the_last_years_mean_squared_return_up_to_each_row():
    closes = _volatile_closes(500)
    frame = make_candles(closes, drop=[450])
    long_run = long_run_variance(frame, "d")
    returns = np.diff(np.log(frame["close"].to_numpy()))
    returns[frame.index[1:] - frame.index[:-1] != pd.Timedelta("1D")] = np.nan  # across the gap
    assert np.isnan(long_run[:MIN_RETURNS]).all() and np.isfinite(long_run[MIN_RETURNS:]).all()
    for t in (MIN_RETURNS, 200, LONG_RUN_RETURNS, 460, len(frame) - 1):
        year = returns[max(0, t - LONG_RUN_RETURNS) : t]
        assert long_run[t] == pytest.approx(np.nanmean(year**2))
    later = frame.copy()
    later.iloc[300:, later.columns.get_loc("close")] *= 1.5  # nothing after a row reaches it
    np.testing.assert_array_equal(long_run_variance(later, "d")[:300], long_run[:300])


def test_a_bands_later_spreads_add_the_long_run_variance_to_the_networks_first():
    frame = make_candles(_volatile_closes(300))
    bands = train_model(frame, TINY, track_price_mape=False).bands
    samples = band_samples(frame, TINY, bands.scaler, bands.return_scale, "d")
    sigma = bands.sigma(samples.x, samples.long_run)
    known = np.isfinite(samples.long_run)
    assert known.any() and not known.all()  # the first origins have fewer than MIN_RETURNS
    h = np.arange(TINY.band_horizon)
    expected = np.sqrt(sigma[known, :1] ** 2 + h * samples.long_run[known, None])
    np.testing.assert_allclose(sigma[known], expected, rtol=1e-12)
    network = bands.sigma(samples.x[~known], samples.long_run[~known])
    assert not np.allclose(network[:, 1:], network[:, :1])  # a young series: its own spreads


def test_recursive_closes_are_one_step_forecasts_fed_back_as_candles():
    config = TINY.replace(features=("close", "high", "volume_base"), band_horizon=0)
    frame = make_candles(wavy_closes(200))
    trained = train_model(frame, config, track_price_mape=False)
    raw, origins = raw_windows(frame, config, np.array([150, len(frame) - 1]), "d")
    closes = recursive_closes(trained.keras_model, trained.scaler, config, raw, 3)
    for row, t in enumerate(origins):  # the same steps, one candle frame at a time
        history = frame.iloc[: t + 1].copy()
        for k in range(3):
            x = latest_window(history, config, trained.scaler)
            base = history["close"].to_numpy()[-1:]
            close = float(to_price(lstm.predict(trained.keras_model, x), base, trained.scaler,
                                   config)[0])  # fmt: skip
            assert closes[row, k] == pytest.approx(close, rel=1e-6)
            candle = history.iloc[[-1]].copy()
            candle.index = candle.index + pd.Timedelta("1D")
            candle[["open", "high", "low", "close"]] = close
            history = pd.concat([history, candle])


def test_band_scores_are_the_interval_metrics_per_horizon():
    rng = np.random.default_rng(2)
    actual = 100 * np.exp(rng.normal(0, 0.05, (50, 2)))
    actual[45:, 1] = np.nan
    spread = np.array([0.03, 0.06])[None, :, None] * rng.standard_normal((1, 1, len(BAND_LEVELS)))
    spread = np.sort(np.broadcast_to(spread, (50, 2, len(BAND_LEVELS))), axis=2)
    quantiles = 100 * np.exp(spread)
    scores = band_scores(actual, quantiles)
    assert scores["n"] == [50, 45]
    level = {q: j for j, q in enumerate(BAND_LEVELS)}
    for h, rows in ((0, slice(None)), (1, slice(0, 45))):
        y, q = actual[rows, h], quantiles[rows, h]
        assert scores["cov95"][h] == coverage(y, q[:, level[0.025]], q[:, level[0.975]])
        assert scores["above95"][h] == pytest.approx(100 * np.mean(y > q[:, level[0.975]]))
        misses = scores["below95"][h] + scores["above95"][h]
        assert scores["cov95"][h] + misses == pytest.approx(100)
        assert scores["winkler95"][h] == winkler(y, q[:, level[0.025]], q[:, level[0.975]], 0.05)
        by_level = {p: q[:, j] for p, j in level.items() if p not in (0.025, 0.975)}
        assert scores["pinball"][h] == pytest.approx(pinball(y, by_level))
    assert scores["calibration"]["nominal"] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    realised = scores["calibration"]["realised"]
    assert realised[0][7] == scores["cov80"][0] and realised[1][-1] == scores["cov95"][1]


def _halfway(z: np.ndarray) -> np.ndarray:
    """The mean of z's conformal levels less their median and a Gaussian's with their std."""
    levels = np.asarray(BAND_LEVELS)
    conformal = conformal_levels(z, levels) - np.median(z)
    return (conformal + np.std(z, ddof=1) * stats.norm.ppf(levels)) / 2


def test_centred_levels_lie_between_the_conformal_and_the_gaussian_edges():
    rng = np.random.default_rng(7)
    z = rng.standard_t(3, 400)  # heavier tails than a Gaussian's
    levels = np.asarray(BAND_LEVELS)
    offsets = centred_levels(z)
    conformal = conformal_levels(z, levels) - np.median(z)
    gaussian = np.std(z, ddof=1) * stats.norm.ppf(levels)
    lo, hi = np.minimum(conformal, gaussian), np.maximum(conformal, gaussian)
    assert ((offsets >= lo) & (offsets <= hi)).all()
    assert offsets[levels == 0.5] == pytest.approx(0.0, abs=0.05)  # centred on the median
    assert not np.allclose(offsets, conformal) and not np.allclose(offsets, gaussian)


def test_served_levels_come_from_the_newest_residuals_known_at_the_origin():
    rng = np.random.default_rng(4)
    n, horizon = 900, 2
    origins = np.arange(n)
    z = rng.standard_normal((n, horizon))
    z[600:] *= 3.0  # a wilder regime from origin 600 on
    fallback = tuple(tuple(float(v) for v in stats.norm.ppf(BAND_LEVELS)) for _ in range(2))
    at = np.array([20, 600, 601, 899])
    offsets = recent_offsets(z, origins, at, fallback)
    np.testing.assert_array_equal(offsets[0], np.asarray(fallback))  # too few residuals yet
    for i, t in enumerate(at[1:], start=1):
        for h in range(horizon):
            known = z[: t - h, h][-RECALIBRATION_ORIGINS:]  # origin + (h + 1) <= t
            expected = _halfway(known)
            np.testing.assert_allclose(offsets[i, h], expected)
    assert offsets[3, 0, -1] > 2 * offsets[1, 0, -1]  # a year later the band has widened
    # residuals of the rows the networks trained on are left out
    late = recent_offsets(z, origins, at[-1:], fallback, unseen_from=700)
    known = z[700 : 899 - 1, 1]
    np.testing.assert_allclose(late[0, 1], _halfway(known))


def test_centred_levels_read_each_padded_row_as_its_own_residuals():
    rng = np.random.default_rng(12)
    rows = [rng.standard_t(4, size) for size in (50, 51, 200, 365)]
    padded = np.full((len(rows), 365), np.nan)  # the first origins' windows: NaN before
    for i, row in enumerate(rows):
        padded[i, 365 - row.size :] = row
    for row, levels in zip(rows, centred_levels(padded), strict=True):
        np.testing.assert_allclose(levels, centred_levels(row), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(levels, _halfway(row), rtol=1e-12, atol=1e-15)
