"""Forecast metrics in price space, always next to persistence (tomorrow's close = today's).

Every function takes 1-D arrays of equal, non-zero length and raises ValueError otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    root_mean_squared_error,
)

from tasks.intervals import diebold_mariano


def _arrays(actual: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).reshape(-1)
    p = np.asarray(predicted, dtype=float).reshape(-1)
    if a.shape != p.shape or a.size == 0:
        raise ValueError(f"need two non-empty arrays of one length, got {a.shape} and {p.shape}")
    if not (np.isfinite(a).all() and np.isfinite(p).all()):
        raise ValueError("actual and predicted values must be finite")
    return a, p


def mape(actual: Any, predicted: Any) -> float:
    """Mean absolute percentage error, in percent.

    MAPE = 100 / n * sum_i |a_i - p_i| / |a_i|

    Raises
    ------
    ValueError: an actual value is 0 (the ratio is undefined; a zero price is bad data), or the
    arrays are empty, of different lengths or not finite.
    """
    a, p = _arrays(actual, predicted)
    if (a == 0).any():
        raise ValueError("MAPE is undefined where an actual value is 0")
    return float(100.0 * mean_absolute_percentage_error(a, p))


def mae(actual: Any, predicted: Any) -> float:
    """Mean absolute error, in the units of the values: MAE = 1/n * sum_i |a_i - p_i|."""
    return float(mean_absolute_error(*_arrays(actual, predicted)))


def rmse(actual: Any, predicted: Any) -> float:
    """Root mean squared error: RMSE = sqrt(1/n * sum_i (a_i - p_i)^2)."""
    return float(root_mean_squared_error(*_arrays(actual, predicted)))


def relative_mae(actual: Any, predicted: Any, persistence: Any) -> float:
    """The model's MAE relative to persistence's on the same rows (Hyndman's RelMAE).

    RelMAE = MAE(actual, predicted) / MAE(actual, persistence); below 1 beats persistence.
    Not the usual MASE, which divides by the naive forecast's in-sample MAE.

    Raises
    ------
    ValueError: persistence is exact on every row (MAE 0), so the ratio is undefined.
    """
    baseline = mae(actual, persistence)
    if baseline == 0:
        raise ValueError("relative MAE is undefined: persistence has zero error")
    return mae(actual, predicted) / baseline


def skill(model_mape: float, persistence_mape: float) -> float:
    """Skill score on MAPE: 1 - MAPE_model / MAPE_persistence.

    0 ties persistence, > 0 beats it, 1 is perfect. ValueError when MAPE_persistence is 0.
    """
    if persistence_mape == 0:
        raise ValueError("skill is undefined: persistence has zero error")
    return 1.0 - model_mape / persistence_mape


def mean_move_pct(base: Any, forecast: Any) -> float:
    """Mean size of the forecast move from the base close, in percent: 100/n * sum |f - b| / b.

    Shows whether a model moves at all (persistence: 0) next to how much prices moved.
    """
    return mape(base, forecast)


def standardized_mape_lecture(z_actual: Any, z_predicted: Any) -> float:
    """The lecture's number, for comparison only: MAPE on *standardized* values, in percent.

    Meaningless as accuracy (standardized values cross 0, where the ratio explodes); computed
    with scikit-learn's MAPE, which divides by max(|a|, eps) instead of failing at 0.
    """
    a, p = _arrays(z_actual, z_predicted)
    return float(100.0 * mean_absolute_percentage_error(a, p))


def skill_significance(actual: Any, predicted: Any, persistence: Any) -> dict[str, float | None]:
    """How far the skill is from chance: the Diebold-Mariano test of the model's absolute
    percentage errors against persistence's on the same rows (one step ahead, HAC variance,
    Harvey-Leybourne-Newbold correction; :func:`tasks.intervals.diebold_mariano`).

    Returns
    -------
    ``skill_p_value``: two-sided p of equal expected error, 1 for identical errors, None for
    fewer than 2 rows; ``dm_statistic``: negative where the model's errors are smaller, None
    where it is not finite (errors that differ by a constant) or undefined.
    """
    a, p = _arrays(actual, predicted)
    _, base = _arrays(actual, persistence)
    if a.size < 2:
        return {"skill_p_value": None, "dm_statistic": None}
    statistic, p_value = diebold_mariano(np.abs(p - a) / a, np.abs(base - a) / a, horizon=1)
    finite = bool(np.isfinite(statistic))
    return {"skill_p_value": float(p_value), "dm_statistic": float(statistic) if finite else None}


def evaluate(
    actual: Any,
    predicted: Any,
    persistence: Any,
    z_actual: Any | None = None,
    z_predicted: Any | None = None,
) -> dict[str, float | int]:
    """All price-space metrics of one part, as a flat JSON-able dict.

    Parameters
    ----------
    actual: realized closes; predicted: the model's closes; persistence: the previous closes
    (the naive forecast), all for the same target rows and in price units.
    z_actual, z_predicted: the standardized target and prediction, for the lecture's
    standardized MAPE only (key omitted when not given).

    Returns
    -------
    n, mape, mae, rmse, persistence_mape, persistence_mae, persistence_rmse, relative_mae, skill,
    skill_p_value, dm_statistic (:func:`skill_significance`), move_pct_model, move_pct_actual
    and, when given, mape_standardized_lecture.
    """
    model_mape = mape(actual, predicted)
    persistence_mape = mape(actual, persistence)
    metrics = {
        "n": int(np.asarray(actual).size),
        "mape": model_mape,
        "mae": mae(actual, predicted),
        "rmse": rmse(actual, predicted),
        "persistence_mape": persistence_mape,
        "persistence_mae": mae(actual, persistence),
        "persistence_rmse": rmse(actual, persistence),
        "relative_mae": relative_mae(actual, predicted, persistence),
        "skill": skill(model_mape, persistence_mape),
        **skill_significance(actual, predicted, persistence),
        "move_pct_model": mean_move_pct(persistence, predicted),
        "move_pct_actual": mean_move_pct(persistence, actual),
    }
    if z_actual is not None and z_predicted is not None:
        metrics["mape_standardized_lecture"] = standardized_mape_lecture(z_actual, z_predicted)
    return metrics
