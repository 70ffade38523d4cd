"""GARCH(1,1) with Student-t innovations, the field's standard volatility model: the baseline
the bands are scored against, beside the naive band (`tasks.intervals`).

The model is fitted on 100 x the log returns of the close (a return across a gap in the
candles counts as one period, as in the naive band), with a zero mean by default:
centred on persistence like the naive band (a fitted constant drift is small beside daily
spreads and changes sign between series; ``mean="constant"`` fits it). It is refitted every
`refit_every` origins on every return known at the block's first; between refits the
parameters stay fixed and only the variance recursion takes in each new return. At h=1 the
quantiles are the fitted standardized Student-t's scaled to the one-period variance forecast,
exact under the model. Beyond, the sum of Student-t periods is no Student-t: the quantiles
are the empirical ones of `paths` simulated paths (`_simulated_log_quantiles`), or with
``paths=0`` the Student-t scaled to the summed variance forecasts, an approximation that
under-covers at longer horizons (docs/benchmarks.md).
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import numpy as np
from arch.univariate import GARCH, ConstantMean, StudentsT, ZeroMean

from candlecast.core.identifiers import period
from tasks.intervals import BAND_LEVELS

MEANS = {"zero": ZeroMean, "constant": ConstantMean}
PATHS = 10_000
REFIT_DAYS = 30
"""Days between the refits of the baseline stored with each version, as in the bench."""
MIN_GARCH_RETURNS = 100
"""The fewest returns the stored baseline is fitted on; origins with fewer get no band."""
_CHUNK = 64
"""Origins simulated at once: bounds the paths held in memory (an hourly series refits every
720 origins)."""


def garch_quantiles(
    closes: Any, starts: np.ndarray, horizon: int, refit_every: int, paths: int = PATHS,
    mean: str = "zero",
) -> np.ndarray:  # fmt: skip
    """[origin, h - 1, level] close quantiles at `BAND_LEVELS` of GARCH(1,1)-t bands from the
    positions `starts` of `closes`, refitted every `refit_every` origins on the returns known
    at the block's first; see the module docstring."""
    closes = np.asarray(closes, dtype=float)
    returns = 100.0 * np.diff(np.log(closes))  # returns[i] ends on close i + 1
    rng = np.random.default_rng(0)  # the simulated paths, when asked for
    out = np.empty((starts.size, horizon, len(BAND_LEVELS)))
    for first in range(0, starts.size, refit_every):
        block = starts[first : first + refit_every]
        # the model holds only the returns known at the block's last origin and is fitted on
        # those known at its first (returns[:t] end on close t); the forecasts start from the
        # return ending on the first origin's close, one row per origin: none sees past it
        model = MEANS[mean](
            returns[: block[-1]], volatility=GARCH(p=1, q=1), distribution=StudentsT()
        )
        fit = model.fit(last_obs=int(block[0]), disp="off")
        forecast = fit.forecast(horizon=horizon, start=int(block[0]) - 1, reindex=False)
        drift = np.cumsum(forecast.mean.to_numpy(), axis=1)  # 0 with a zero mean
        variance = forecast.variance.to_numpy()
        spread = np.sqrt(np.cumsum(variance, axis=1))  # the scaled Student-t's, exact at h=1
        levels = model.distribution.ppf(list(BAND_LEVELS), [fit.params["nu"]])
        log_q = drift[:, :, None] + spread[:, :, None] * levels
        if paths and horizon > 1:
            log_q[:, 1:] = _simulated_log_quantiles(fit.params, variance[:, 0], horizon, paths, rng)
        out[first : first + block.size] = closes[block, None, None] * np.exp(log_q / 100.0)
    return out


def _simulated_log_quantiles(
    params: Any, first_variance: np.ndarray, horizon: int, paths: int, rng: np.random.Generator
) -> np.ndarray:
    """[origin, h - 2, level] empirical quantiles of the h-period log return (in % units) at
    h = 2..`horizon` over `paths` simulated paths of the fitted model from each origin's
    one-period variance forecast, each origin with draws of its own, as ``arch``'s
    simulation forecast makes them; vectorized over origins, several times faster than it."""
    omega, alpha, beta = params["omega"], params["alpha[1]"], params["beta[1]"]
    nu, mu = params["nu"], params.get("mu", 0.0)
    out = np.empty((first_variance.size, horizon - 1, len(BAND_LEVELS)))
    for lo in range(0, first_variance.size, _CHUNK):
        variance = np.repeat(first_variance[lo : lo + _CHUNK, None], paths, axis=1)
        shocks = rng.standard_t(nu, size=(horizon, *variance.shape)) * np.sqrt((nu - 2.0) / nu)
        total = np.zeros_like(variance)
        for h in range(horizon):
            residual = np.sqrt(variance) * shocks[h]
            total += mu + residual
            if h:
                out[lo : lo + _CHUNK, h - 1] = _sorted_quantiles(total)
            variance = omega + alpha * residual**2 + beta * variance
    return out


def _sorted_quantiles(samples: np.ndarray) -> np.ndarray:
    """[row, level] quantiles at `BAND_LEVELS` along the last axis, interpolated as
    ``np.quantile``'s default; one sort serves every level, several times faster than it."""
    ordered = np.sort(samples, axis=-1)
    position = np.asarray(BAND_LEVELS) * (samples.shape[-1] - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, samples.shape[-1] - 1)
    weight = position - below
    return ordered[..., below] * (1.0 - weight) + ordered[..., above] * weight


def stored_quantiles(
    closes: np.ndarray, starts: np.ndarray, horizon: int, timeframe: str
) -> np.ndarray:
    """(origin, h - 1, level) GARCH(1,1)-t quantiles of the next `horizon` closes from each
    position in `starts` (sorted), refitted every `REFIT_DAYS` days, NaN at origins with fewer
    than `MIN_GARCH_RETURNS` returns before them. A retrain's band scores hold it beside the
    naive band's (`tasks.forecast.backtest_bands`)."""
    out = np.full((starts.size, horizon, len(BAND_LEVELS)), np.nan)
    known = starts >= MIN_GARCH_RETURNS
    if known.any():
        every = max(1, round(timedelta(days=REFIT_DAYS) / period(timeframe)))
        with warnings.catch_warnings():  # a baseline's fit that converges poorly still scores
            warnings.simplefilter("ignore")
            out[known] = garch_quantiles(closes, starts[known], horizon, every)
    return out
