"""The GARCH(1,1)-t baseline a version's bands are scored beside: the next close only, refitted
every 30 days of candles, nothing for an origin with too short a history."""

from __future__ import annotations

import numpy as np

from tasks.garch import MIN_GARCH_RETURNS, garch_quantiles, next_period_quantiles
from tasks.intervals import BAND_LEVELS


def _closes(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.02))


def test_the_stored_baseline_is_garchs_next_close_from_origins_with_history():
    closes = _closes(400)
    starts = np.arange(60, 399)  # the first 40 have too few returns before them
    got = next_period_quantiles(closes, starts, 3, "d")
    assert got.shape == (starts.size, 3, len(BAND_LEVELS))
    known = starts >= MIN_GARCH_RETURNS
    assert np.isnan(got[~known]).all() and np.isnan(got[:, 1:]).all()  # h >= 2: not simulated
    exact = garch_quantiles(closes, starts[known], 1, refit_every=30, paths=0)
    np.testing.assert_array_equal(got[known, :1], exact)
    median = got[known, 0, BAND_LEVELS.index(0.5)]
    np.testing.assert_allclose(median, closes[starts[known]])  # zero mean: persistence
    assert (np.diff(got[known, 0], axis=1) > 0).all()  # quantiles rise with the level


def test_an_hourly_series_refits_every_30_days_of_hours_not_every_30_hours():
    closes = _closes(900, seed=4)
    starts = np.arange(150, 899)
    got = next_period_quantiles(closes, starts, 1, "1h")
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
    before, after = (next_period_quantiles(c, starts, 1, "d") for c in (closes, changed))
    kept = starts <= t
    np.testing.assert_array_equal(before[kept], after[kept])
    assert not np.allclose(before[~kept], after[~kept])


def test_a_series_too_young_for_garch_gets_no_baseline_and_no_fit():
    closes = _closes(80)
    got = next_period_quantiles(closes, np.arange(20, 79), 2, "d")
    assert np.isnan(got).all()
