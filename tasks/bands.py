"""The band network: how far the close may move 1..H periods ahead, as calibrated quantiles.

A small LSTM reads the newest `band_window` candles' log return, its size and the high-low
range (what carries volatility: quiet weeks follow quiet weeks) and forecasts the spread of
the close's log change h = 1..H periods ahead, trained on the Gaussian likelihood
(`models.losses.gaussian_nll`). A band serves the network's spread for the next period and,
for each later one, the last year's mean squared log return (`LONG_RUN_RETURNS`): a
volatility cluster decays within days, and with the network's own later spreads the 7-day
bands scored worse on three of the four shared files (bench/RESULTS.md). So

    sigma_h^2 = sigma_1^2 + (h - 1) * mean(r^2 over the last year)

and the network's later spreads serve only where the series holds fewer than `MIN_RETURNS`
returns. Its quantiles are read horizon by horizon from normalized residuals
z = log(c_(t+h) / point_h) / sigma_h, half from their split conformal levels and half from
a Gaussian with their standard deviation (:func:`centred_levels`). A served band reads them from
the newest residuals the networks were not trained on (:func:`recent_offsets`); the
validation part's, stored with the model (:func:`calibrate`), stand in for a young series.
A band is centred on the point forecast, whose median it keeps:

    Q_q,h = point_h * exp(sigma_h * (z_q,h - z_0.5,h))

Alignment follows tasks/prepare.py: a sample's window ends at its origin row t, and it belongs
to the part that holds its h=1 target row t+1. A horizon whose target row lies past the
sample's part, or across a gap, is left out (NaN): a training sample never sees a validation
row, nor a validation sample a test row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from models.network import Network
from models.presets import ModelConfig
from tasks.intervals import BAND_LEVELS, MIN_RETURNS
from tasks.prepare import ScalerParams, fit_scaler, segment_ids, split_bounds, window_ends

VOLATILITY_COLUMNS = ("log_return", "abs_return", "log_range")
RECALIBRATION_ORIGINS = 365
"""A served band's levels are read from the standardized residuals of this many newest
origins whose targets are known (a year of days): the volatility regime moves, and the
calibration of a network trained weeks or months ago moves with it."""
LONG_RUN_RETURNS = 365
"""A band's periods after the first are spread as the mean squared log return of this many
newest periods (a year of days) up to its origin, as the naive band's are."""
MIN_CALIBRATION = 50
"""The fewest residuals a horizon's levels are read from; below, the stored levels (or the
Gaussian's) stand (with 50, the 2.5% tail holds about one residual)."""
GAUSSIAN_LEVELS = stats.norm.ppf(BAND_LEVELS)
"""The standard Gaussian's quantiles at `BAND_LEVELS`, read once: every served origin's
levels use them (:func:`centred_levels`)."""


def volatility_frame(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """The band network's unscaled inputs, one row per candle: the close's log return (NaN
    on the first candle of every run of consecutive candles), its absolute value, and
    log(high / low)."""
    close = np.log(frame["close"].to_numpy(dtype=float))
    returns = np.concatenate([[np.nan], np.diff(close)])
    segments = segment_ids(frame.index, timeframe)
    returns[np.concatenate([[True], segments[1:] != segments[:-1]])] = np.nan
    span = np.log(frame["high"].to_numpy(dtype=float) / frame["low"].to_numpy(dtype=float))
    values = np.column_stack([returns, np.abs(returns), span])
    return pd.DataFrame(values, index=frame.index, columns=list(VOLATILITY_COLUMNS))


def band_config(config: ModelConfig) -> ModelConfig:
    """The point model's config turned into the band network's: its window, units, epochs
    and loss; one network, no dropout (three averaged gained nothing: bench/RESULTS.md)."""
    return config.replace(
        name=f"{config.name}_bands", window=config.band_window, units=config.band_units,
        epochs=config.band_epochs, loss="gaussian_nll", ensemble=1, dropout=0.0,
    )  # fmt: skip


@dataclass(frozen=True)
class BandSamples:
    """Windows of the volatility inputs and their targets, aligned element by element.

    x: (n, band_window, 3) standardized inputs; y: (n, H) log(c_(t+h) / c_t) / return_scale,
    NaN where unknown to the sample's part; origin: the row t each window ends at; long_run:
    (n,) the mean squared log return up to t (:func:`long_run_variance`).
    """

    x: np.ndarray
    y: np.ndarray
    origin: np.ndarray
    long_run: np.ndarray

    def __len__(self) -> int:
        return len(self.origin)

    def select(self, rows: np.ndarray) -> BandSamples:
        return BandSamples(self.x[rows], self.y[rows], self.origin[rows], self.long_run[rows])


@dataclass(frozen=True)
class Bands(Network):
    """A trained band network with its input scaler and calibration.

    model_bytes: the `.keras` file; scaler: of the volatility inputs, fitted on the training
    rows; return_scale: the training rows' standard deviation of the log return (the unit of
    the targets); offsets[h - 1][j]: z at `levels[j]` minus the median's, calibrated at
    horizon h; calibrated_on[h - 1]: the validation residuals they were read from (0: the
    Gaussian's); history: per-epoch losses.
    """

    model_bytes: bytes = field(repr=False)
    scaler: ScalerParams
    return_scale: float
    offsets: tuple[tuple[float, ...], ...]
    calibrated_on: tuple[int, ...]
    levels: tuple[float, ...] = BAND_LEVELS
    history: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def horizon(self) -> int:
        return len(self.offsets)

    @property
    def window(self) -> int:
        return int(self.keras_model.inputs[0].shape[1])

    def sigma(self, x: np.ndarray, long_run: np.ndarray) -> np.ndarray:
        """(n, H) spreads of the log change: the network's from the standardized input windows
        `x` for the next period, each later one adding a period at the `long_run` (n,)
        variance (:func:`long_run_variance`); the network's own where that is NaN."""
        from models import lstm

        log_sigma = lstm.predict(self.keras_model, x).reshape(len(x), -1)
        network = self.return_scale * np.exp(log_sigma.astype(float))
        later = np.arange(network.shape[1])[None, :] * np.asarray(long_run, float)[:, None]
        spread = np.sqrt(network[:, :1] ** 2 + later)
        return np.where(np.isfinite(spread), spread, network)

    def quantiles(
        self,
        x: np.ndarray,
        long_run: np.ndarray,
        centre: np.ndarray,
        offsets: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, h, len(levels)) close quantiles around `centre` (n, h) point forecasts, for the
        first h <= H horizons, from the inputs of :meth:`sigma`, with `offsets` (n, >= h,
        levels) from :func:`recent_offsets` or, when None, the stored calibration."""
        h = centre.shape[1]
        levels = np.asarray(self.offsets)[None] if offsets is None else np.asarray(offsets)
        spread = self.sigma(x, long_run)[:, :h, None] * levels[:, :h, :]
        return centre[:, :, None] * np.exp(spread)

    def metadata(self) -> dict[str, Any]:
        return {
            "scaler": self.scaler.to_dict(),
            "return_scale": self.return_scale,
            "offsets": [list(row) for row in self.offsets],
            "calibrated_on": list(self.calibrated_on),
            "levels": list(self.levels),
            "history": self.history,
            "train_seconds": self.train_seconds,
        }

    @classmethod
    def from_parts(cls, model_bytes: bytes, meta: dict[str, Any]) -> Bands:
        return cls(
            model_bytes=model_bytes,
            scaler=ScalerParams.from_dict(meta["scaler"]),
            return_scale=float(meta["return_scale"]),
            offsets=tuple(tuple(row) for row in meta["offsets"]),
            calibrated_on=tuple(meta["calibrated_on"]),
            levels=tuple(meta["levels"]),
            history=meta.get("history", {}),
            train_seconds=meta.get("train_seconds", 0.0),
        )


def band_samples(
    frame: pd.DataFrame,
    config: ModelConfig,
    scaler: ScalerParams,
    return_scale: float,
    timeframe: str,
    bounds: tuple[int, int] | None = None,
) -> BandSamples:
    """Every complete volatility window of `frame` with its 1..H targets.

    `bounds` (a, b) are the part boundaries (prepare's `split_bounds`): a target is left out
    when it lies in a later part than the sample's h=1 target. None: every target in `frame`.
    """
    horizon, window = config.band_horizon, config.band_window
    scaled = scaler.transform(volatility_frame(frame, timeframe).to_numpy())
    segments = segment_ids(frame.index, timeframe)
    ends = window_ends(~np.isnan(scaled).any(axis=1), segments, window)
    close = np.log(frame["close"].to_numpy(dtype=float))
    rows = ends[:, None] + np.arange(1, horizon + 1)[None, :]
    inside = rows < len(frame)
    rows = np.where(inside, rows, ends[:, None])
    y = (close[rows] - close[ends][:, None]) / return_scale
    known = inside & (segments[rows] == segments[ends][:, None])
    if bounds is not None:
        limit = np.select([ends + 1 < bounds[0], ends + 1 < bounds[1]], list(bounds), len(frame))
        known &= rows < limit[:, None]
    x = scaled[ends[:, None] + np.arange(-window + 1, 1)[None, :]].astype(np.float32)
    long_run = long_run_variance(frame, timeframe)[ends]
    return BandSamples(x, np.where(known, y, np.nan).astype(np.float32), ends, long_run)


def long_run_variance(frame: pd.DataFrame, timeframe: str) -> np.ndarray:
    """(len(frame),) per row t, the mean squared log return of the close over the newest
    `LONG_RUN_RETURNS` periods up to t (returns across a gap left out); NaN where fewer than
    `MIN_RETURNS` are known."""
    squared = pd.Series(volatility_frame(frame, timeframe)["log_return"].to_numpy() ** 2)
    return squared.rolling(LONG_RUN_RETURNS, min_periods=MIN_RETURNS).mean().to_numpy()


def newest_inputs(bands: Bands, frame: pd.DataFrame, timeframe: str) -> np.ndarray | None:
    """The standardized window ending at the newest candle, (1, band_window, 3); None when
    those candles are not consecutive or a value is undefined (no band then)."""
    window = bands.window
    recent = frame.iloc[-(window + 1) :]
    scaled = bands.scaler.transform(volatility_frame(recent, timeframe).to_numpy())[-window:]
    runs = segment_ids(recent.index, timeframe)[-window:]
    if len(scaled) < window or np.isnan(scaled).any() or runs[0] != runs[-1]:
        return None
    return scaled[None].astype(np.float32)


def train_bands(frame: pd.DataFrame, config: ModelConfig, timeframe: str = "d") -> Bands:
    """Train the band network from scratch on the training part, with early stopping on the
    validation part. Its levels are the Gaussian's until :func:`calibrate` reads them from
    the residuals around the point forecast (`tasks.train` does, on the validation part).

    Raises ValueError when there is no training window.
    """
    from models import lstm, training

    a, b = split_bounds(len(frame), config.val_fraction, config.test_fraction)
    inputs = volatility_frame(frame, timeframe)
    scaler = fit_scaler(inputs.iloc[:a])
    return_scale = float(np.nanstd(inputs["log_return"].iloc[:a], ddof=1))
    samples = band_samples(frame, config, scaler, return_scale, timeframe, (a, b))
    first = samples.origin + 1
    train, val = samples.select(first < a), samples.select((first >= a) & (first < b))
    if len(train) == 0:
        raise ValueError("no band training windows: too few consecutive candles")
    network = band_config(config)
    walk = 0.5 * np.log(np.arange(1, config.band_horizon + 1))  # a random walk's log spread
    model = lstm.build(network, len(VOLATILITY_COLUMNS), config.band_horizon, walk.tolist())
    started = time.perf_counter()
    history = training.fit(
        model, (train.x, train.y), (val.x, val.y) if len(val) else None,
        epochs=network.epochs, batch_size=network.batch_size, patience=network.patience,
        seed=network.seed,
    )  # fmt: skip
    gaussian, _ = calibrate(np.empty((0, config.band_horizon)))
    return Bands(
        model_bytes=lstm.to_bytes(model), scaler=scaler, return_scale=return_scale,
        offsets=gaussian, calibrated_on=(0,) * config.band_horizon, history=history,
        train_seconds=time.perf_counter() - started,
    ).loaded(model)  # fmt: skip


def fine_tune_bands(
    bands: Bands,
    frame: pd.DataFrame,
    config: ModelConfig,
    timeframe: str,
    epochs: int | None,
    seed: int,
) -> Bands:
    """Continue training the band network as `tasks.train.fine_tune` does the point network:
    `epochs` (default config.fine_tune_epochs) epochs on the newest config.fine_tune_rows
    windows before the test part, keeping the scaler and the calibration (the validation
    rows it was read from are now partly in the training)."""
    from models import lstm, training

    b = split_bounds(len(frame), config.val_fraction, config.test_fraction)[1]
    samples = band_samples(frame, config, bands.scaler, bands.return_scale, timeframe, (b, b))
    seen = np.flatnonzero(samples.origin + 1 < b)
    newest = samples.select(
        seen if config.fine_tune_rows is None else seen[-config.fine_tune_rows :]
    )
    model = lstm.from_bytes(bands.model_bytes)
    network = band_config(config)
    lstm.compile_model(model, network, config.fine_tune_learning_rate, run_eagerly=True)
    started = time.perf_counter()
    history = training.train_steps(
        model, (newest.x, newest.y), epochs=epochs or config.fine_tune_epochs,
        batch_size=config.fine_tune_batch_size or config.batch_size, seed=seed,
    )  # fmt: skip
    return bands.replace(
        model_bytes=lstm.to_bytes(model), history=history,
        train_seconds=time.perf_counter() - started,
    ).loaded(model)  # fmt: skip


def calibrate(z: np.ndarray) -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    """Per horizon, :func:`centred_levels` of the standardized residuals z (n, H), NaN where
    unknown; the Gaussian's where fewer than `MIN_CALIBRATION` are known. Returns (offsets,
    how many residuals each horizon's were read from, 0 for the Gaussian's)."""
    gaussian = tuple(float(v) for v in GAUSSIAN_LEVELS)
    offsets, counts = [], []
    for h in range(z.shape[1]):
        known = z[np.isfinite(z[:, h]), h]
        enough = known.size >= MIN_CALIBRATION
        offsets.append(tuple(float(v) for v in centred_levels(known)) if enough else gaussian)
        counts.append(int(known.size) if enough else 0)
    return tuple(offsets), tuple(counts)


def recent_offsets(
    z: np.ndarray,
    origins: np.ndarray,
    at: np.ndarray,
    fallback: tuple[tuple[float, ...], ...],
    unseen_from: int = 0,
) -> np.ndarray:
    """(m, H, levels) calibration offsets for bands served from the positions `at`.

    For horizon h, the :func:`centred_levels` of the standardized residuals z of the newest
    `RECALIBRATION_ORIGINS` origins from `unseen_from` on (the first whose target the
    networks were not trained on) whose h-ahead close was known at t (origin + h <= t); the
    stored calibration `fallback` (H, levels) where fewer than `MIN_CALIBRATION` are.
    Residuals of training rows run small: a network fits its own rows.

    Parameters
    ----------
    z: (n, H) residuals log(c_(s+h) / point_h) / sigma_h per origin s, NaN where unknown.
    origins: (n,) the sorted positions s of those origins.
    at: (m,) the positions bands are served from.
    unseen_from: the first origin position whose residual may be used.
    """
    out = np.broadcast_to(np.asarray(fallback), (len(at), *np.shape(fallback))).copy()
    before = np.full(RECALIBRATION_ORIGINS, np.nan)  # pads the windows of the first origins
    for h in range(out.shape[1]):
        known = np.isfinite(z[:, h]) & (origins >= unseen_from)
        ends = np.searchsorted(origins[known], np.asarray(at) - (h + 1), side="right")
        enough = np.minimum(ends, RECALIBRATION_ORIGINS) >= MIN_CALIBRATION
        if enough.any():  # row i: the residuals [ends[i] - RECALIBRATION_ORIGINS, ends[i])
            padded = np.concatenate([before, z[known, h]])
            windows = sliding_window_view(padded, RECALIBRATION_ORIGINS)[ends[enough]]
            out[enough, h] = centred_levels(windows)
    return out


def centred_levels(z: np.ndarray) -> np.ndarray:
    """A band's offsets from its centre at `BAND_LEVELS`, in units of sigma: the mean of the
    conformal levels (:func:`conformal_levels`) of residuals z less their median, and a
    Gaussian's with their standard deviation; along z's last axis, NaN where a row holds
    fewer residuals (every served origin's at once).

    A 95% band's conformal edges each rest on the two or three most extreme of 100
    residuals, and at h > 1 those overlap; the Gaussian reads its width from all of them,
    the conformal levels keep their skew and tails. Alone, either missed more targets on
    the shared files (bench/RESULTS.md)."""
    ranked = np.sort(z, axis=-1)  # NaN last
    n = np.isfinite(ranked).sum(axis=-1, keepdims=True)
    middle = np.concatenate([(n - 1) // 2, n // 2], axis=-1)  # one rank, or the two
    median = np.take_along_axis(ranked, middle, axis=-1).mean(axis=-1, keepdims=True)
    spread = np.nanstd(ranked, axis=-1, ddof=1, keepdims=True)
    conformal = _conformal(ranked, n, np.asarray(BAND_LEVELS))
    return (conformal - median + spread * GAUSSIAN_LEVELS) / 2


def conformal_levels(z: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Split conformal's finite-sample quantiles of n residuals: the ceil((n + 1) q)-th
    smallest for a level q above 0.5, the floor((n + 1) q)-th for one below (clipped to
    1..n), so that a new residual falls beyond each with probability at most its tail.
    Along z's last axis, NaN where a row holds fewer residuals."""
    ranked = np.sort(z, axis=-1)
    return _conformal(ranked, np.isfinite(ranked).sum(axis=-1, keepdims=True), levels)


def _conformal(ranked: np.ndarray, n: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """:func:`conformal_levels` of residuals already sorted, n of them known in each row."""
    upper = np.asarray(levels) > 0.5
    rank = np.where(upper, np.ceil((n + 1) * levels), np.floor((n + 1) * levels))
    return np.take_along_axis(ranked, np.clip(rank.astype(int), 1, n) - 1, axis=-1)
