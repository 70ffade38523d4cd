"""Forecast bands and how they are scored: coverage, interval (Winkler) score, pinball loss, the
naive band, and the Diebold-Mariano test of a point forecast against a baseline.

Scores are in percent of the realised close, so files of different price levels compare. Every
metric takes 1-D arrays of equal, non-zero length, finite, with every realised close above 0,
and raises ValueError otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

PINBALL_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""The quantile levels the mean pinball loss averages over: 0.05, 0.10, ..., 0.95."""

BANDS: dict[int, tuple[float, float]] = {80: (0.10, 0.90), 95: (0.025, 0.975)}
"""Central bands by nominal coverage in percent: (lower, upper) quantile levels."""

BAND_LEVELS: tuple[float, ...] = tuple(
    sorted(set(PINBALL_LEVELS).union(*(set(levels) for levels in BANDS.values())))
)
"""Every level a forecast band carries to be scored: the pinball levels and the band edges."""

BAND_EDGES: dict[str, float] = {"low95": 0.025, "low80": 0.10, "high80": 0.90, "high95": 0.975}
"""A forecast row's band columns and the quantile level each holds."""

MIN_RETURNS = 30
"""The fewest daily log returns `naive_band` estimates a spread from: with 30, the sample
standard deviation is still off by about 1 / sqrt(2 (n - 1)) = 13% by chance alone."""

SERVED_DAYS = 90
"""The served bands' realised coverage is read over this many newest scored days at h=1, the
longest window of the `forecast_accuracy` view."""
COVERAGE_P_VALUE = 0.01
"""A test window's band coverage fails when a one-sided binomial test puts it this far below
nominal: below 92.7% (95% band) or 76.1% (80%) on 560 days, 88.3% or 66.7% on 60."""


def _rows(actual: Any, *others: Any) -> tuple[np.ndarray, ...]:
    arrays = tuple(np.asarray(a, dtype=float).reshape(-1) for a in (actual, *others))
    if arrays[0].size == 0 or any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"need non-empty arrays of one length, got {[a.shape for a in arrays]}")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("actual values and bands must be finite")
    if (arrays[0] <= 0).any():
        raise ValueError("scores are in % of the realised close, which must be above 0")
    return arrays


def _band(actual: Any, lower: Any, upper: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, lo, hi = _rows(actual, lower, upper)
    if (lo > hi).any():
        raise ValueError("a band's lower edge is above its upper edge")
    return y, lo, hi


def coverage(actual: Any, lower: Any, upper: Any) -> float:
    """Share of realised values inside their band, edges included, in percent.

    coverage = 100 / n * sum_i 1[l_i <= y_i <= u_i]

    Parameters
    ----------
    actual: realised closes y_i; lower, upper: the band's edges l_i <= u_i, on the same rows.

    Returns
    -------
    A percentage in [0, 100]; a zero-width band counts a row only when y_i equals it exactly.

    Raises
    ------
    ValueError: the arrays are empty, of different lengths or not finite, a realised close is
    not above 0, or a lower edge is above its upper edge.
    """
    y, lo, hi = _band(actual, lower, upper)
    return float(100.0 * np.mean((lo <= y) & (y <= hi)))


def winkler(actual: Any, lower: Any, upper: Any, alpha: float) -> float:
    """Mean interval (Winkler) score of a central (1 - alpha) band, in % of the realised close.

    IS_i = (u_i - l_i) + (2 / alpha) (l_i - y_i) 1[y_i < l_i] + (2 / alpha) (y_i - u_i) 1[y_i > u_i]
    winkler = 100 / n * sum_i IS_i / y_i

    Lower is better: a band pays its width, and a miss pays 2/alpha times its distance.

    Parameters
    ----------
    actual: realised closes y_i; lower, upper: the band's edges l_i <= u_i, on the same rows.
    alpha: the band's nominal miss rate, 0.05 for a 95% band.

    Returns
    -------
    The mean score in percent; 0 only for zero-width bands that every y_i hits exactly.

    Raises
    ------
    ValueError: alpha is not in (0, 1), or as `coverage`.
    """
    return float(np.mean(winkler_losses(actual, lower, upper, alpha)))


def winkler_losses(actual: Any, lower: Any, upper: Any, alpha: float) -> np.ndarray:
    """Each row's interval score IS_i / y_i in percent, as :func:`winkler` averages them
    (and raises)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y, lo, hi = _band(actual, lower, upper)
    below = (2.0 / alpha) * np.clip(lo - y, 0.0, None)
    above = (2.0 / alpha) * np.clip(y - hi, 0.0, None)
    return 100.0 * (hi - lo + below + above) / y


def pinball(actual: Any, quantiles: Mapping[float, Any]) -> float:
    """Mean pinball (quantile) loss over rows and levels, in % of the realised close.

    L_q,i = max(q (y_i - p_q,i), (q - 1) (y_i - p_q,i)) / y_i * 100
    pinball = mean over the n rows and the k levels q of L_q,i

    An under-forecast costs q per unit, an over-forecast 1 - q; at q = 0.5 it is half the
    absolute error. Averaged over `PINBALL_LEVELS` it approximates CRPS / 2, scaled likewise.

    Parameters
    ----------
    actual: realised closes y_i.
    quantiles: level q in (0, 1) -> forecast quantiles p_q,i on the same rows as `actual`.

    Returns
    -------
    The mean loss in percent; 0 only when every quantile equals its realised close.

    Raises
    ------
    ValueError: no levels, a level outside (0, 1), or as `coverage` for each level's array.
    """
    return float(np.mean(pinball_losses(actual, quantiles)))


def pinball_losses(actual: Any, quantiles: Mapping[float, Any]) -> np.ndarray:
    """Each row's pinball loss averaged over the levels, in percent, as :func:`pinball`
    averages them over the rows (and raises)."""
    if not quantiles:
        raise ValueError("pinball needs at least one quantile level")
    losses = []
    for q, forecast in quantiles.items():
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile levels must be in (0, 1), got {q}")
        y, p = _rows(actual, forecast)
        losses.append(np.maximum(q * (y - p), (q - 1.0) * (y - p)) / y)
    return 100.0 * np.mean(losses, axis=0)


def naive_band(
    closes: Any, horizon: int, levels: Iterable[float], lookback: int = 365
) -> dict[float, float]:
    """Quantiles of the close `horizon` periods after the newest one, from persistence and the
    spread of the recent log returns.

    r_j = log(c_j / c_{j-1}), the last m = min(lookback, len(closes) - 1) of them
    sigma = sample standard deviation of those r_j (ddof=1)
    Q_q = c_t * exp(z_q * sigma * sqrt(horizon)), z_q the standard normal quantile

    A zero-mean Gaussian on the log return, so the band is log-normal: its median is the newest
    close (persistence), its mean slightly above it. Fewer than `lookback` returns are used as
    they are (a young series), down to `MIN_RETURNS`.

    Parameters
    ----------
    closes: the series' closes in time order, the newest (the forecast origin c_t) last; only
        the last lookback + 1 are read. All must be above 0 and finite.
    horizon: h >= 1, how many periods ahead.
    levels: quantile levels in (0, 1).
    lookback: the most daily log returns the spread is estimated from.

    Returns
    -------
    {level: close quantile}, in the order of `levels`.

    Raises
    ------
    ValueError: fewer than `MIN_RETURNS` returns, a close not above 0 or not finite, horizon
    below 1, lookback below `MIN_RETURNS`, or a level outside (0, 1).
    """
    if horizon < 1 or lookback < MIN_RETURNS:
        raise ValueError(
            f"need horizon >= 1 and lookback >= {MIN_RETURNS}, got {horizon=}, {lookback=}"
        )
    c = np.asarray(closes, dtype=float).reshape(-1)[-(lookback + 1) :]
    if c.size - 1 < MIN_RETURNS:
        raise ValueError(f"need at least {MIN_RETURNS} returns, got {max(c.size - 1, 0)}")
    if not (np.isfinite(c).all() and (c > 0).all()):
        raise ValueError("closes must be finite and above 0")
    q = np.asarray(list(levels), dtype=float)
    if not ((q > 0) & (q < 1)).all():
        raise ValueError(f"quantile levels must be in (0, 1), got {q.tolist()}")
    sigma = np.diff(np.log(c)).std(ddof=1) * np.sqrt(horizon)
    prices = c[-1] * np.exp(stats.norm.ppf(q) * sigma)
    return {float(level): float(p) for level, p in zip(q, prices, strict=True)}


def diebold_mariano(
    loss_model: Any, loss_baseline: Any, horizon: int, small_sample: bool = True
) -> tuple[float, float]:
    """Diebold-Mariano test of equal expected loss, two-sided.

    d_i = loss_model_i - loss_baseline_i, dbar = mean(d), gamma_k = 1/n sum_i (d_i - dbar)
    (d_{i-k} - dbar); V = gamma_0 + 2 sum_{k=1}^{h-1} (1 - k/h) gamma_k (Newey-West, Bartlett
    weights, lag h - 1: an optimal h-step forecast's errors are MA(h-1));
    DM = dbar / sqrt(V / n).

    With `small_sample` (the default), Harvey, Leybourne and Newbold's (1997) correction:
    DM* = DM * sqrt((n + 1 - 2h + h(h-1)/n) / n), p = 2 P(T_{n-1} > |DM*|). They derived the
    factor for the uniform-weight variance; at h = 1 the two coincide. Without it,
    p = 2 P(Z > |DM|), the normal limit. Negative statistics favour the model.

    Parameters
    ----------
    loss_model, loss_baseline: per-row losses of the two forecasts on the same rows (absolute
        or squared errors, in any one unit).
    horizon: h >= 1, the forecasts' horizon.
    small_sample: apply the HLN correction and the t distribution.

    Returns
    -------
    (statistic, p_value). When d is identically zero: (0.0, 1.0). When d is a non-zero
    constant (V = 0): (+-inf, 0.0).

    Raises
    ------
    ValueError: horizon below 1, fewer than max(2, h + 1) rows, arrays of different lengths
    or not finite.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    model = np.asarray(loss_model, dtype=float).reshape(-1)
    baseline = np.asarray(loss_baseline, dtype=float).reshape(-1)
    n = model.size
    if model.shape != baseline.shape or n < max(2, horizon + 1):
        raise ValueError(f"need two arrays of one length >= {max(2, horizon + 1)} rows")
    if not (np.isfinite(model).all() and np.isfinite(baseline).all()):
        raise ValueError("losses must be finite")
    d = model - baseline
    dbar = float(d.mean())
    centred = d - dbar
    variance = float(centred @ centred) / n
    for k in range(1, horizon):
        variance += 2.0 * (1.0 - k / horizon) * float(centred[k:] @ centred[:-k]) / n
    if variance <= 0.0:
        return (0.0, 1.0) if dbar == 0.0 else (float(np.copysign(np.inf, dbar)), 0.0)
    statistic = dbar / np.sqrt(variance / n)
    if not small_sample:
        return float(statistic), float(2.0 * stats.norm.sf(abs(statistic)))
    statistic *= np.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    return float(statistic), float(2.0 * stats.t.sf(abs(statistic), df=n - 1))


def naive_quantiles(
    closes: np.ndarray, origins: np.ndarray, horizon: int, levels: Iterable[float] = BAND_LEVELS
) -> np.ndarray:
    """(origin, h - 1, level) close quantiles of the naive band, :func:`naive_band` at every
    origin position and h = 1..horizon at once, each from the closes up to its origin; NaN
    where an origin has fewer than `MIN_RETURNS` returns."""
    c = np.asarray(closes, dtype=float).reshape(-1)
    returns = pd.Series(np.concatenate([[np.nan], np.diff(np.log(c))]))
    sigma = returns.rolling(365, min_periods=MIN_RETURNS).std(ddof=1).to_numpy()[origins]
    z = stats.norm.ppf(np.asarray(tuple(levels), dtype=float))
    spread = sigma[:, None, None] * np.sqrt(np.arange(1, horizon + 1))[None, :, None] * z
    return c[origins][:, None, None] * np.exp(spread)


def band_scores(
    actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...] = BAND_LEVELS
) -> dict[str, list[float | None]]:
    """Per horizon, how a band forecast scored on the rows whose realised close is known.

    Parameters
    ----------
    actual: (n, H) realised closes, NaN where unknown (a horizon past the data).
    quantiles: (n, H, len(levels)) forecast quantiles on the same rows; a row with a NaN
        quantile is left out at that horizon.
    levels: the quantile levels, holding `PINBALL_LEVELS` and the edges of `BANDS`.

    Returns
    -------
    Lists over h = 1..H: ``n``; ``cov80``, ``cov95`` (coverage, %); ``below95`` and
    ``above95``, the % of rows whose close fell below or above the 95% band (a drift shows as
    one side missing more); ``winkler95`` and ``pinball`` (% of the realised close); and
    ``calibration``: for each central band the
    levels hold (nominal 10, 20, ..., 90 and 95%), its realised coverage at every h. None
    where a horizon has no row.
    """
    index = {round(q, 4): j for j, q in enumerate(levels)}
    central = sorted(
        {round(100 * (1 - 2 * q)) for q in levels if q < 0.5 and round(1 - q, 4) in index}
    )
    keys = ("n", "cov80", "cov95", "below95", "above95", "winkler95", "pinball")
    scores: dict[str, Any] = {k: [] for k in keys}
    scores["calibration"] = {"nominal": central, "realised": []}
    for h in range(actual.shape[1]):
        known = np.isfinite(actual[:, h]) & np.isfinite(quantiles[:, h]).all(axis=1)
        y, q = actual[known, h], quantiles[known, h]
        scores["n"].append(int(known.sum()))
        if not known.any():
            for key in keys[1:]:
                scores[key].append(None)
            scores["calibration"]["realised"].append([None] * len(central))
            continue

        def edge(level: float, q: np.ndarray = q) -> np.ndarray:
            return q[:, index[round(level, 4)]]

        for nominal, (lo, hi) in BANDS.items():
            scores[f"cov{nominal}"].append(coverage(y, edge(lo), edge(hi)))
        lo, hi = BANDS[95]
        scores["below95"].append(float(100 * np.mean(y < edge(lo))))
        scores["above95"].append(float(100 * np.mean(y > edge(hi))))
        interval, quantile = _row_losses(y, q, index)
        scores["winkler95"].append(float(np.mean(interval)))
        scores["pinball"].append(float(np.mean(quantile)))
        scores["calibration"]["realised"].append(
            [coverage(y, edge((100 - c) / 200), edge((100 + c) / 200)) for c in central]
        )
    return scores


def scores_beside(
    actual: np.ndarray, quantiles: np.ndarray, baselines: Mapping[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """{"model": :func:`band_scores` of `quantiles`, name: each baseline's, with the
    :func:`band_tests` of the model's scores against it}, all on the same rows."""
    table: dict[str, dict[str, Any]] = {"model": band_scores(actual, quantiles)}
    for name, baseline in baselines.items():
        table[name] = band_scores(actual, baseline) | band_tests(actual, quantiles, baseline)
    return table


def band_tests(
    actual: np.ndarray,
    quantiles: np.ndarray,
    baseline: np.ndarray,
    levels: tuple[float, ...] = BAND_LEVELS,
) -> dict[str, list[float | None]]:
    """Per horizon, whether a band forecast's interval score and pinball loss differ from a
    baseline's on the same rows by more than chance: the two-sided p of
    :func:`diebold_mariano` on the per-row losses, lag h - 1 at horizon h (bands from
    consecutive origins share h - 1 days of path).

    Parameters
    ----------
    actual: (n, H) realised closes, NaN where unknown.
    quantiles, baseline: (n, H, len(levels)) the two forecasts' quantiles; a row where either
        has a NaN quantile is left out at that horizon.
    levels: as :func:`band_scores`.

    Returns
    -------
    ``winkler95_p`` and ``pinball_p``, lists over h = 1..H; None where a horizon has fewer
    than h + 1 rows that both forecasts and the close cover.
    """
    index = {round(q, 4): j for j, q in enumerate(levels)}
    tests: dict[str, list[float | None]] = {"winkler95_p": [], "pinball_p": []}
    for h in range(actual.shape[1]):
        known = np.isfinite(actual[:, h])
        known &= np.isfinite(quantiles[:, h]).all(axis=1) & np.isfinite(baseline[:, h]).all(axis=1)
        if known.sum() < h + 2:
            tests["winkler95_p"].append(None)
            tests["pinball_p"].append(None)
            continue
        y = actual[known, h]
        ours, theirs = (_row_losses(y, q[known, h], index) for q in (quantiles, baseline))
        for key, mine, other in zip(tests, ours, theirs, strict=True):
            tests[key].append(diebold_mariano(mine, other, horizon=h + 1)[1])
    return tests


def _row_losses(
    y: np.ndarray, q: np.ndarray, index: dict[float, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(interval score at 95%, pinball loss) of each row, quantiles `q` at columns `index`."""
    lo, hi = (q[:, index[level]] for level in BANDS[95])
    edges = {level: q[:, index[level]] for level in PINBALL_LEVELS}
    return winkler_losses(y, lo, hi, alpha=0.05), pinball_losses(y, edges)


def served_coverage(rows: list[tuple[float, float, float, float, float]]) -> dict[str, Any]:
    """How the served bands of `rows` (`db.forecasts.served_bands`) did: how many, and the
    realised coverage of their 80% and 95% bands in %."""
    actual, low95, low80, high80, high95 = (list(column) for column in zip(*rows, strict=True))
    return {
        "n": len(rows),
        "cov80": coverage(actual, low80, high80),
        "cov95": coverage(actual, low95, high95),
    }


def too_narrow(n: int, cov80: float | None, cov95: float | None) -> tuple[int, float] | None:
    """The first band, (nominal %, covered %), whose coverage of `n` days is further below
    nominal than chance allows (one-sided binomial test at `COVERAGE_P_VALUE`); None when
    neither is, or without bands.

    Only too narrow a band fails: it claims more certainty than it has. One that covers more
    than nominal is honest but wide, and the interval score charges its width."""
    for nominal, covered in ((80, cov80), (95, cov95)):
        if covered is None or n == 0:
            continue
        hits = round(covered / 100 * n)
        test = stats.binomtest(hits, n, nominal / 100, alternative="less")
        if test.pvalue < COVERAGE_P_VALUE:
            return nominal, covered
    return None
