"""The GARCH(1,1)-t baseline a version's bands are scored beside: every horizon, refitted every
30 days of candles, its multi-period quantiles simulated as ``arch`` simulates them, nothing
for an origin with too short a history."""

from __future__ import annotations

import numpy as np
from arch.univariate import GARCH, StudentsT, ZeroMean

from tasks.garch import (
    MIN_GARCH_RETURNS,
    _simulated_log_quantiles,
    _sorted_quantiles,
    garch_quantiles,
    stored_quantiles,
)
from tasks.intervals import BAND_LEVELS


def _closes(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.02))


def test_the_stored_baseline_is_garchs_bands_from_origins_with_history():
    closes = _closes(400)
    starts = np.arange(60, 397)  # the first 40 have too few returns before them
    got = stored_quantiles(closes, starts, 3, "d")
    assert got.shape == (starts.size, 3, len(BAND_LEVELS))
    known = starts >= MIN_GARCH_RETURNS
    assert np.isnan(got[~known]).all() and np.isfinite(got[known]).all()
    np.testing.assert_array_equal(got[known], garch_quantiles(closes, starts[known], 3, 30))
    exact = garch_quantiles(closes, starts[known], 1, refit_every=30, paths=0)
    np.testing.assert_allclose(got[known, :1], exact, rtol=1e-12)  # h=1: the exact Student-t
    median = got[known, 0, BAND_LEVELS.index(0.5)]
    np.testing.assert_allclose(median, closes[starts[known]])  # zero mean: persistence
    assert (np.diff(got[known], axis=2) > 0).all()  # quantiles rise with the level
    width = got[known, :, -1] - got[known, :, 0]
    assert (np.diff(width, axis=1) > 0).all()  # and the band widens with the horizon


def test_simulated_quantiles_are_archs_own_simulation_forecast_within_monte_carlo_error():
    returns = 100.0 * np.diff(np.log(_closes(700, seed=8)))
    returns[-20:] *= 3.0  # a violent spell: along each path the variance falls back
    fit = ZeroMean(returns, volatility=GARCH(p=1, q=1), distribution=StudentsT(seed=1)).fit(
        disp="off"
    )
    horizon, paths, start = 6, 40_000, len(returns) - 3
    theirs = fit.forecast(horizon=horizon, start=start, method="simulation", simulations=paths)
    cumulative = np.cumsum(theirs.simulations.values, axis=2)[:, :, 1:]
    expected = np.moveaxis(np.quantile(cumulative, BAND_LEVELS, axis=1), 0, -1)
    first = theirs.variance.to_numpy()[:, 0]
    got = _simulated_log_quantiles(fit.params, first, horizon, paths, np.random.default_rng(2))

    def widths(quantiles: np.ndarray) -> np.ndarray:  # of the 95% and 80% bands, per horizon
        inner = BAND_LEVELS.index(0.1), BAND_LEVELS.index(0.9)
        return quantiles[..., [-1, inner[1]]] - quantiles[..., [0, inner[0]]]

    np.testing.assert_allclose(widths(got) / widths(expected), 1.0, atol=0.025)
    # the tolerance tells apart the two shortcuts: the Student-t scaled to the summed variance
    # (its 80% bands 5-9% narrow here) and paths whose variance stays at the first period's
    ppf = fit.model.distribution.ppf(list(BAND_LEVELS), [fit.params["nu"]])
    summed = np.cumsum(fit.forecast(horizon=horizon, start=start).variance.to_numpy(), axis=1)
    for variance in (summed[:, 1:], first[:, None] * np.arange(2, horizon + 1)):
        shortcut = np.sqrt(variance)[..., None] * ppf
        assert np.abs(widths(shortcut) / widths(expected) - 1.0).max() > 0.05


def test_an_hourly_series_refits_every_30_days_of_hours_not_every_30_hours():
    closes = _closes(900, seed=4)
    starts = np.arange(150, 899)
    got = stored_quantiles(closes, starts, 1, "1h")
    one_fit = garch_quantiles(closes, starts[:720], 1, refit_every=720, paths=0)
    np.testing.assert_array_equal(got[:720], one_fit)
    monthly = garch_quantiles(closes, starts, 1, refit_every=30, paths=0)
    assert not np.allclose(got, monthly)


def test_the_stored_baseline_never_sees_a_close_after_its_origin():
    closes = _closes(400, seed=5)
    starts = np.arange(300, 399)
    t = int(starts[30])  # the first origin of the second fit
    changed = closes.copy()
    changed[t + 1 :] *= np.exp(np.random.default_rng(6).normal(0.0, 0.2, closes.size - t - 1))
    before, after = (stored_quantiles(c, starts, 1, "d") for c in (closes, changed))
    kept = starts <= t
    np.testing.assert_array_equal(before[kept], after[kept])
    assert not np.allclose(before[~kept], after[~kept])


def test_a_series_too_young_for_garch_gets_no_baseline_and_no_fit():
    closes = _closes(80)
    got = stored_quantiles(closes, np.arange(20, 79), 2, "d")
    assert np.isnan(got).all()


def test_sorted_quantiles_are_numpys_default_quantiles_at_the_band_levels():
    samples = np.random.default_rng(9).standard_t(3, size=(4, 1001))
    expected = np.moveaxis(np.quantile(samples, BAND_LEVELS, axis=-1), 0, -1)
    np.testing.assert_allclose(_sorted_quantiles(samples), expected, rtol=1e-12)
