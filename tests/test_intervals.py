"""Band metrics, the naive band and the Diebold-Mariano test on hand-built inputs whose values
are worked out in the comments; and the bench's bands, which must not see past their origin."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.bands import origins
from tasks.garch import garch_quantiles
from tasks.intervals import (
    BAND_LEVELS,
    BANDS,
    MIN_RETURNS,
    PINBALL_LEVELS,
    band_scores,
    band_tests,
    coverage,
    diebold_mariano,
    naive_band,
    naive_quantiles,
    pinball,
    pinball_losses,
    scores_beside,
    winkler,
    winkler_losses,
)

Z975 = 1.959963984540054  # the standard normal's 0.975 quantile


def test_levels_hold_the_pinball_grid_and_both_bands_edges():
    assert len(PINBALL_LEVELS) == 19
    assert PINBALL_LEVELS[0] == 0.05 and PINBALL_LEVELS[-1] == 0.95
    assert 0.10 in PINBALL_LEVELS and 0.90 in PINBALL_LEVELS  # exact keys, not 0.1000000001
    assert BANDS == {80: (0.10, 0.90), 95: (0.025, 0.975)}
    assert set(BAND_LEVELS) == set(PINBALL_LEVELS) | {0.025, 0.975}


def test_coverage_counts_rows_inside_edges_included():
    # inside; on a zero-width band; below; below
    assert coverage([1, 2, 3, 4], [0, 2, 3.5, 5], [2, 2, 4, 6]) == 50.0
    assert coverage([1.0], [1.5], [2.0]) == 0.0
    assert coverage([5.0, 6.0], [5.0, 5.0], [6.0, 6.0]) == 100.0


@pytest.mark.parametrize(
    ("actual", "lower", "upper"),
    [([], [], []), ([1, 2], [0], [3]), ([0.0], [0.0], [1.0]), ([1.0], [2.0], [0.5]),
     ([np.nan], [0.0], [2.0])],
    ids=["empty", "lengths", "zero-close", "crossed", "nan"],
)  # fmt: skip
def test_band_metrics_refuse_bad_rows(actual, lower, upper):
    with pytest.raises(ValueError):
        coverage(actual, lower, upper)
    with pytest.raises(ValueError):
        winkler(actual, lower, upper, alpha=0.05)


def test_winkler_adds_two_over_alpha_times_the_miss_in_percent_of_the_close():
    # 2 / 0.05 = 40. Row 1 inside: 20 / 100. Row 2 below by 5: (15 + 40 * 5) / 100 = 2.15.
    # Row 3 above by 10: (40 + 40 * 10) / 200 = 2.2. Mean 4.55 / 3, times 100.
    score = winkler([100, 100, 200], [90, 105, 150], [110, 120, 190], alpha=0.05)
    assert score == pytest.approx(455 / 3)
    # alpha 0.2: the same misses cost 10x instead of 40x
    assert winkler([100], [105], [120], alpha=0.2) == pytest.approx((15 + 10 * 5) / 100 * 100)


def test_winkler_is_zero_only_for_zero_width_bands_that_hit():
    assert winkler([5.0, 7.0], [5.0, 7.0], [5.0, 7.0], alpha=0.05) == 0.0
    assert winkler([5.0], [5.0], [5.5], alpha=0.05) == pytest.approx(10.0)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_winkler_refuses_an_alpha_outside_0_1(alpha):
    with pytest.raises(ValueError, match="alpha"):
        winkler([1.0], [0.5], [1.5], alpha=alpha)


def test_pinball_weighs_under_and_over_forecasts_by_the_level():
    # q=0.1: row 1 over by 10 -> 0.9 * 10 / 100 = 0.09; row 2 under by 20 -> 0.1 * 20 / 200 = 0.01
    # q=0.9: row 1 -> 0.1 * 10 / 100 = 0.01; row 2 -> 0.9 * 20 / 200 = 0.09. Mean 0.05 -> 5%.
    loss = pinball([100, 200], {0.1: [110, 180], 0.9: [110, 180]})
    assert loss == pytest.approx(5.0)


def test_pinball_at_the_median_is_half_the_absolute_percentage_error():
    assert pinball([100.0, 50.0], {0.5: [90.0, 55.0]}) == pytest.approx(0.5 * (10.0 + 10.0) / 2)


def test_pinball_is_zero_for_quantiles_on_the_realised_close():
    assert pinball([3.0, 4.0], {q: [3.0, 4.0] for q in PINBALL_LEVELS}) == 0.0


@pytest.mark.parametrize(
    "quantiles",
    [{}, {0.0: [1.0]}, {1.0: [1.0]}, {0.5: [1.0, 2.0]}, {0.5: [np.inf]}],
    ids=["no-levels", "level-0", "level-1", "lengths", "inf"],
)
def test_pinball_refuses_bad_levels_and_rows(quantiles):
    with pytest.raises(ValueError):
        pinball([1.0], quantiles)


def _alternating(spread: float, n_returns: int, start: float = 100.0) -> np.ndarray:
    """Closes whose log returns alternate +spread, -spread (mean 0; the newest close = start
    when n_returns is even)."""
    steps = spread * np.where(np.arange(n_returns) % 2 == 0, 1.0, -1.0)
    return start * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))


def test_naive_band_is_log_normal_around_persistence_with_the_sample_spread():
    closes = _alternating(0.02, 40)
    sigma = 0.02 * math.sqrt(40 / 39)  # ddof=1 over the 40 returns
    band = naive_band(closes, horizon=4, levels=(0.025, 0.5, 0.975), lookback=40)
    assert list(band) == [0.025, 0.5, 0.975]
    assert band[0.5] == pytest.approx(closes[-1], rel=1e-12)
    assert band[0.975] == pytest.approx(closes[-1] * math.exp(Z975 * sigma * 2), rel=1e-12)
    assert band[0.025] == pytest.approx(closes[-1] * math.exp(-Z975 * sigma * 2), rel=1e-12)


def test_naive_band_reads_only_the_last_lookback_returns():
    calm = _alternating(0.02, 40)
    closes = np.r_[calm[0] * 3.0, calm]  # one wild return just before the last 40
    assert naive_band(closes, 1, (0.1, 0.9), lookback=40) == naive_band(calm, 1, (0.1, 0.9), 40)
    wider = naive_band(closes, 1, (0.1, 0.9), lookback=41)
    assert wider[0.9] > naive_band(calm, 1, (0.1, 0.9), 40)[0.9] * 1.05


def test_naive_band_uses_the_returns_a_young_series_has():
    closes = _alternating(0.02, 40)
    assert naive_band(closes, 2, (0.1,), lookback=365) == naive_band(closes, 2, (0.1,), 40)
    with pytest.raises(ValueError, match=f"at least {MIN_RETURNS} returns"):
        naive_band(closes[-MIN_RETURNS:], 1, (0.1,))  # MIN_RETURNS closes: one return short


@pytest.mark.parametrize(
    ("closes", "horizon", "levels"),
    [(_alternating(0.02, 40), 0, (0.5,)), (_alternating(0.02, 40), 1, (0.0,)),
     (np.r_[_alternating(0.02, 40), 0.0], 1, (0.5,))],
    ids=["horizon-0", "level-0", "zero-close"],
)  # fmt: skip
def test_naive_band_refuses_bad_inputs(closes, horizon, levels):
    with pytest.raises(ValueError):
        naive_band(closes, horizon, levels)


def test_diebold_mariano_on_a_worked_example():
    # d = [1, -1, 2, 0]: mean 0.5, gamma_0 = 5/4, DM = 0.5 / sqrt(5/16) = 2 / sqrt(5);
    # HLN at h=1: x sqrt(3/4) = sqrt(0.6), p from t with 3 degrees of freedom.
    losses, zeros = [1.0, -1.0, 2.0, 0.0], [0.0] * 4
    assert diebold_mariano(losses, zeros, 1, small_sample=False) == pytest.approx(
        (2 / math.sqrt(5), 0.37109336952269756)
    )
    assert diebold_mariano(losses, zeros, 1) == pytest.approx((math.sqrt(0.6), 0.4950253460597))
    # h=2: gamma_1 = -15/16, Bartlett weight 1/2: V = 5/4 - 15/16 = 5/16, DM = 4 / sqrt(5);
    # HLN: x sqrt((4 + 1 - 4 + 2/4) / 4) = sqrt(1.2). Uniform weights would make V negative.
    assert diebold_mariano(losses, zeros, 2, small_sample=False) == pytest.approx(
        (4 / math.sqrt(5), 0.07363827012030266)
    )
    assert diebold_mariano(losses, zeros, 2) == pytest.approx((math.sqrt(1.2), 0.3533874662887))


def test_diebold_mariano_identical_losses_are_no_evidence():
    losses = [0.3, 1.2, 0.7, 2.0]
    assert diebold_mariano(losses, losses, 1) == (0.0, 1.0)
    assert diebold_mariano(losses, losses, 3, small_sample=False) == (0.0, 1.0)


def test_diebold_mariano_a_constant_gap_is_certain():
    assert diebold_mariano([1.0] * 5, [2.0] * 5, 1) == (-math.inf, 0.0)


def test_diebold_mariano_finds_a_clearly_better_model_and_is_symmetric():
    rng = np.random.default_rng(7)
    baseline = np.abs(rng.normal(0.0, 1.0, 500))
    model = np.abs(rng.normal(0.0, 0.5, 500))
    statistic, p = diebold_mariano(model, baseline, 1)
    assert statistic < 0 and p < 1e-6
    swapped, p_swapped = diebold_mariano(baseline, model, 1)
    assert swapped == pytest.approx(-statistic) and p_swapped == pytest.approx(p)
    # the baseline's own losses in another order: as good on average, no evidence
    assert diebold_mariano(rng.permutation(baseline), baseline, 1)[1] > 0.99


@pytest.mark.parametrize(
    ("model", "baseline", "horizon"),
    [([1.0], [2.0], 1), ([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], 3), ([1.0, 2.0], [1.0], 1),
     ([1.0, 2.0], [1.0, 2.0], 0), ([1.0, np.nan], [1.0, 2.0], 1)],
    ids=["one-row", "rows-not-above-h", "lengths", "horizon-0", "nan"],
)  # fmt: skip
def test_diebold_mariano_refuses_too_few_rows_and_bad_input(model, baseline, horizon):
    with pytest.raises(ValueError):
        diebold_mariano(model, baseline, horizon)


def test_row_losses_are_what_the_scores_average():
    # row 0 inside its band: width 20 of 100 = 20%; row 1 is 10 below a band of width 20 at
    # alpha 0.05: (20 + 40 * 10) / 90 = 466.67%
    actual, lower, upper = [100.0, 90.0], [90.0, 100.0], [110.0, 120.0]
    rows = winkler_losses(actual, lower, upper, alpha=0.05)
    assert rows == pytest.approx([20.0, 420.0 / 90.0 * 100.0])
    assert winkler(actual, lower, upper, alpha=0.05) == pytest.approx(rows.mean())
    quantiles = {0.1: [95.0, 80.0], 0.5: [100.0, 95.0], 0.9: [105.0, 99.0]}
    # row 0: 0.1 * 5 (q=0.1, 5 under) + 0 + 0.1 * 5 (q=0.9, 5 over), over 3 levels, of 100
    rows = pinball_losses(actual, quantiles)
    assert rows[0] == pytest.approx(1.0 / 3.0)
    assert pinball(actual, quantiles) == pytest.approx(rows.mean())


def _log_normal_bands(centre: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(n, 2, levels) quantiles of a log-normal around `centre` with log spread `spread`
    (n,), the same at both horizons."""
    z = stats.norm.ppf(BAND_LEVELS)
    one = centre[:, None] * np.exp(spread[:, None] * z[None, :])
    return np.stack([one, one], axis=1)


def test_band_tests_tell_a_sharper_band_from_chance_and_a_band_from_itself():
    # quiet and violent stretches: a band that knows each day's spread beats one spread at
    # the average, on interval score and pinball; against itself the test finds nothing
    rng = np.random.default_rng(3)
    n = 600
    spread = np.where(np.arange(n) // 50 % 2 == 0, 0.01, 0.05)
    centre = np.full(n, 100.0)
    actual = centre * np.exp(spread * rng.standard_normal(n))
    actual = np.column_stack([actual, np.full(n, np.nan)])  # h=2 never realised
    knows = _log_normal_bands(centre, spread)
    average = _log_normal_bands(centre, np.full(n, np.sqrt(np.mean(spread**2))))
    tests = band_tests(actual, knows, average)
    assert tests["winkler95_p"][0] < 1e-6 and tests["pinball_p"][0] < 1e-3
    assert tests["winkler95_p"][1] is None and tests["pinball_p"][1] is None
    assert band_tests(actual, knows, knows) == {
        "winkler95_p": [1.0, None],
        "pinball_p": [1.0, None],
    }
    scores = band_scores(actual, knows), band_scores(actual, average)
    assert scores[0]["winkler95"][0] < scores[1]["winkler95"][0]


def _steady_days(n: int, seed: int, spreads: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """(n, 2) closes around 100 with a 2% log spread, realised at both horizons, and a
    log-normal band around 100 for each of `spreads`."""
    centre = np.full(n, 100.0)
    moves = np.exp(0.02 * np.random.default_rng(seed).standard_normal(n))
    actual = (centre * moves)[:, None].repeat(2, axis=1)
    return actual, *(_log_normal_bands(centre, np.full(n, s)) for s in spreads)


def test_scores_beside_put_each_baselines_scores_and_tests_next_to_the_models():
    actual, model, wide = _steady_days(120, seed=5, spreads=(0.02, 0.04))
    table = scores_beside(actual, model, {"wide": wide})
    assert list(table) == ["model", "wide"]
    assert table["model"] == band_scores(actual, model)
    assert table["wide"] == band_scores(actual, wide) | band_tests(actual, model, wide)


def test_band_tests_leave_out_rows_either_band_lacks():
    actual, wide, narrow = _steady_days(200, seed=4, spreads=(0.03, 0.02))
    gapped = wide.copy()
    gapped[:10] = np.nan  # a young series: no band on its first origins
    kept = band_tests(actual[10:], wide[10:], narrow[10:])
    assert band_tests(actual, gapped, narrow) == kept


@pytest.mark.parametrize("paths", [0, 50])
def test_bench_bands_never_see_a_close_after_their_origin(paths):
    rng = np.random.default_rng(3)
    closes = pd.Series(100.0 * np.exp(np.cumsum(rng.standard_t(4, 500) * 0.03)))
    starts = origins(closes.size)  # 399..498: refits at the origins 399, 429, 459, 489
    t = int(starts[60])  # a refit's first origin: its fit and all its bands stop at t
    changed = closes.copy()
    changed.iloc[t + 1 :] *= np.exp(rng.normal(0.0, 0.2, closes.size - t - 1))
    kept = starts <= t
    for quantiles in (
        lambda c: garch_quantiles(c, starts, 3, refit_every=30, paths=paths),
        lambda c: naive_quantiles(c.to_numpy(), starts, 3),
    ):
        before, after = quantiles(closes), quantiles(changed)
        np.testing.assert_array_equal(before[kept], after[kept])
        assert not np.allclose(before[~kept], after[~kept])  # the later bands do move


def test_naive_quantiles_are_the_naive_band_at_every_origin_and_horizon():
    rng = np.random.default_rng(11)
    closes = 100.0 * np.exp(np.cumsum(rng.standard_t(4, 420) * 0.03))
    starts = np.array([10, MIN_RETURNS, 200, 364, 365, 419])
    levels = (0.025, 0.1, 0.5, 0.9, 0.975)
    got = naive_quantiles(closes, starts, 4, levels)
    assert np.isnan(got[0]).all()  # 10 returns: too few for a spread
    for i, t in enumerate(starts[1:], start=1):
        for h in range(1, 5):
            expected = list(naive_band(closes[: t + 1], h, levels).values())
            np.testing.assert_allclose(got[i, h - 1], expected, rtol=1e-12)
