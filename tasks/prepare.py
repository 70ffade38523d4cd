"""Candles frame -> scaled, windowed training data: chronological split, scaler, windows.

Alignment (pinned in tests/test_prepare.py): a window *ending* at row t holds the feature rows
t-window+1 .. t and its target is row t+1. Its persistence forecast is the close of row t.
A window never spans a gap (consecutive index step != one period), and a sample belongs to the
train, validation or test part according to the row of its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from candlecast.core.identifiers import period
from models.presets import VOLUME_COLUMNS, ModelConfig


@dataclass(frozen=True)
class ScalerParams:
    """A fitted StandardScaler as plain numbers: z = (x - mean) / scale, per column."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardize an (n, len(columns)) array."""
        return (values - np.asarray(self.mean)) / np.asarray(self.scale)

    def inverse_column(self, z: np.ndarray, column: str) -> np.ndarray:
        """Undo the standardization of one column: x = z * scale + mean."""
        i = self.columns.index(column)
        return np.asarray(z, dtype=float) * self.scale[i] + self.mean[i]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalerParams:
        return cls(tuple(data["columns"]), tuple(data["mean"]), tuple(data["scale"]))


@dataclass(frozen=True)
class Samples:
    """Windows of one part (train, validation or test), aligned element by element.

    x: (n, window, n_features) standardized inputs; y: (n,) standardized target;
    base_close: close of each window's last row (the persistence forecast);
    actual_close: close of the target row; target_time: open_time of the target row.
    """

    x: np.ndarray
    y: np.ndarray
    base_close: np.ndarray
    actual_close: np.ndarray
    target_time: pd.DatetimeIndex

    def __len__(self) -> int:
        return len(self.y)

    def select(self, rows: np.ndarray) -> Samples:
        """The samples at `rows` (a boolean mask or integer positions)."""
        return Samples(
            self.x[rows], self.y[rows], self.base_close[rows], self.actual_close[rows],
            self.target_time[rows],
        )  # fmt: skip

    def tail(self, n: int | None) -> Samples:
        """The newest `n` samples (all when n is None)."""
        return (
            self
            if n is None or n >= len(self)
            else self.select(np.arange(len(self) - n, len(self)))
        )


@dataclass(frozen=True)
class Prepared:
    """The three chronological parts and the scaler fitted on the training rows."""

    train: Samples
    val: Samples
    test: Samples
    scaler: ScalerParams


def segment_ids(index: pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Number each run of consecutive candles: the id grows by one after every gap.

    Parameters
    ----------
    index: sorted open times.
    timeframe: 'd' or '1h'; a gap is any step different from one period.

    Returns
    -------
    int array, one id per row, starting at 0.
    """
    steps = index[1:] - index[:-1]  # TimedeltaIndex, whatever the index's time unit
    breaks = np.asarray(steps != pd.Timedelta(period(timeframe)))
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def feature_frame(frame: pd.DataFrame, config: ModelConfig, timeframe: str) -> pd.DataFrame:
    """Unscaled network inputs, one row per candle; NaN where a value is undefined.

    `level`: the raw column values. `log_return`: :func:`feature_values` of consecutive rows,
    undefined on the first row of every run of consecutive candles, so no value ever spans a
    gap.
    """
    raw = frame.loc[:, list(config.features)].astype(float)
    if config.target == "level":
        return raw
    values = feature_values(raw.to_numpy(), config.features, config.target)
    returns = pd.DataFrame(np.nan, index=raw.index, columns=raw.columns)
    returns.iloc[1:] = values
    segments = segment_ids(frame.index, timeframe)
    first_of_run = np.concatenate([[True], segments[1:] != segments[:-1]])
    returns[first_of_run] = np.nan
    return returns


def feature_values(raw: np.ndarray, columns: tuple[str, ...], target: str) -> np.ndarray:
    """Network inputs from raw candle values (..., rows, columns): the values themselves for
    `level`; for `log_return` one row fewer, log(x_t / x_(t-1)) for price columns and
    log((v_t + 1) / (v_(t-1) + 1)) for volumes (defined at zero volume). The rows must be
    consecutive candles; training (:func:`feature_frame`) and the recursive forecast share it.
    """
    if target == "level":
        return raw
    volume = np.array([c in VOLUME_COLUMNS for c in columns])
    logs = np.array(raw, dtype=float)
    logs[..., volume] = np.log1p(logs[..., volume])
    logs[..., ~volume] = np.log(logs[..., ~volume])
    return np.diff(logs, axis=-2)


def split_bounds(n_rows: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Row positions (a, b): train rows [0, a), validation [a, b), test [b, n_rows).

    The test part is the last round(test_fraction * n_rows) rows, validation the
    round(val_fraction * n_rows) rows before it.
    """
    n_test = round(test_fraction * n_rows)
    n_val = round(val_fraction * n_rows)
    b = n_rows - n_test
    a = b - n_val
    if a <= 0:
        raise ValueError(f"{n_rows} rows leave no training rows for the split {val_fraction=}")
    return a, b


def fit_scaler(features: pd.DataFrame) -> ScalerParams:
    """Fit scikit-learn's StandardScaler on the given (training) rows; NaN rows are skipped."""
    rows = features.dropna()
    if rows.empty:
        raise ValueError("no complete training rows to fit the scaler on")
    scaler = StandardScaler().fit(rows.to_numpy())
    return ScalerParams(
        tuple(features.columns),
        tuple(float(m) for m in scaler.mean_),
        tuple(float(s) for s in scaler.scale_),
    )


def window_ends(valid: np.ndarray, segments: np.ndarray, window: int) -> np.ndarray:
    """Positions t whose window rows t-window+1 .. t and target row t+1 exist together.

    Parameters
    ----------
    valid: per row, True where every feature is defined.
    segments: per row, the run id from `segment_ids`.
    window: rows per window.

    Returns
    -------
    Sorted int array of window end positions; rows t-window+1 .. t+1 are all valid and all in
    one run of consecutive candles.
    """
    n = len(valid)
    ends = np.arange(window - 1, n - 1)
    if ends.size == 0:
        return ends
    bad = (~valid).astype(np.int64)
    bad_before = np.concatenate([[0], np.cumsum(bad)])  # bad rows in [0, i)
    starts = ends - window + 1
    no_bad = bad_before[ends + 2] - bad_before[starts] == 0
    one_run = segments[starts] == segments[ends + 1]
    return ends[no_bad & one_run]


def _ordered(config: ModelConfig) -> ModelConfig:
    """Put close first so that column 0 is always the target."""
    others = tuple(f for f in config.features if f != "close")
    return config.replace(features=("close", *others))


def prepare(
    frame: pd.DataFrame,
    config: ModelConfig,
    timeframe: str = "d",
    scaler: ScalerParams | None = None,
) -> Prepared:
    """Split, scale and window a candles frame.

    Parameters
    ----------
    frame: final candles, sorted tz-aware `open_time` index, columns incl. `config.features`.
    config: features, target, window and split fractions.
    timeframe: 'd' or '1h', to find gaps.
    scaler: keep this scaler (fine-tuning); None fits a new one on the training rows only.

    Returns
    -------
    Prepared with train/val/test samples (assigned by target row) and the scaler.
    """
    config = _ordered(config)
    a, b = split_bounds(len(frame), config.val_fraction, config.test_fraction)
    if scaler is None:
        scaler = fit_scaler(feature_frame(frame, config, timeframe).iloc[:a])
    samples, targets = _windows(frame, config, timeframe, scaler)
    train, val, test = (
        samples.select(mask) for mask in (targets < a, (targets >= a) & (targets < b), targets >= b)
    )
    return Prepared(train, val, test, scaler)


def windows(
    frame: pd.DataFrame, config: ModelConfig, scaler: ScalerParams, timeframe: str = "d"
) -> Samples:
    """Every complete window of `frame` with its target, scaled by `scaler`, in time order."""
    return _windows(frame, config, timeframe, scaler)[0]


def _windows(
    frame: pd.DataFrame, config: ModelConfig, timeframe: str, scaler: ScalerParams
) -> tuple[Samples, np.ndarray]:
    """All windows and their target row positions (see the module docstring for alignment)."""
    features = feature_frame(frame, _ordered(config), timeframe)
    scaled = scaler.transform(features[list(scaler.columns)].to_numpy())
    valid = ~np.isnan(scaled).any(axis=1)
    ends = window_ends(valid, segment_ids(frame.index, timeframe), config.window)
    offsets = np.arange(-config.window + 1, 1)
    close = frame["close"].to_numpy(dtype=float)
    x = scaled[ends[:, None] + offsets[None, :]].astype(np.float32)
    y = scaled[ends + 1, 0].astype(np.float32)  # column 0 is close
    return Samples(x, y, close[ends], close[ends + 1], frame.index[ends + 1]), ends + 1


def latest_window(
    frame: pd.DataFrame, config: ModelConfig, scaler: ScalerParams, timeframe: str = "d"
) -> np.ndarray:
    """The standardized input window ending at the newest row, shape (1, window, n_features).

    Raises ValueError when the newest `window` rows are not consecutive or not all defined.
    """
    config = _ordered(config)
    need = config.window + (1 if config.target == "log_return" else 0)
    recent = frame.iloc[-need:]
    scaled = scaler.transform(feature_frame(recent, config, timeframe)[list(scaler.columns)])
    scaled = np.asarray(scaled)[-config.window :]
    runs = segment_ids(recent.index, timeframe)[-config.window :]
    if len(scaled) < config.window or np.isnan(scaled).any() or runs[0] != runs[-1]:
        raise ValueError(
            f"the newest {config.window} candles are not consecutive and complete; "
            "no window to forecast from"
        )
    return scaled[None, :, :].astype(np.float32)


def to_price(
    z: np.ndarray, base_close: np.ndarray, scaler: ScalerParams, config: ModelConfig
) -> np.ndarray:
    """Standardized predicted target -> predicted close in price units.

    `level`: close = z * scale + mean. `log_return`: close = base_close * exp(shrink * r) with
    r = z * scale + mean, the predicted log return (shrink pulls it toward persistence).
    """
    value = scaler.inverse_column(z, "close")
    if config.target == "level":
        return value
    return np.asarray(base_close, dtype=float) * np.exp(config.shrink * value)
