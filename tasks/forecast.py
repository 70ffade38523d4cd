"""Recursive multi-day forecast of the close, in price units, from a trained model, with the
bands of its band network."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from candlecast.core.errors import IncompleteWindowError
from candlecast.core.identifiers import label, period
from models.presets import PRICE_COLUMNS, VOLUME_COLUMNS, ModelConfig
from tasks.bands import (
    LONG_RUN_RETURNS,
    RECALIBRATION_ORIGINS,
    Bands,
    band_samples,
    calibrate,
    long_run_variance,
    newest_inputs,
    recent_offsets,
)
from tasks.garch import stored_quantiles
from tasks.intervals import BAND_EDGES, naive_quantiles, scores_beside
from tasks.prepare import ScalerParams, feature_values, segment_ids, to_price
from tasks.trained import TrainedModel

MAX_BRIDGED = 2  # missing candles the newest input window may bridge (an exchange outage)


def input_window(frame: pd.DataFrame, rows: int, timeframe: str) -> tuple[pd.DataFrame, int]:
    """The newest ``rows`` periods up to the newest candle, a short gap bridged.

    A missing candle inside the window is filled on the straight line, in log price, between
    the real candles around it (open = high = low = close; volumes likewise): the move the
    real candles show is spread evenly over the missing periods, and no move is invented
    that they do not show. At most :data:`MAX_BRIDGED` candles are bridged, counting those
    of a gap that begins before the window.

    Parameters
    ----------
    frame: final candles indexed by UTC open time, oldest first.
    rows: periods the forecast reads, ending at the newest candle.
    timeframe: 'd' or '1h'.

    Returns
    -------
    (the window, ``rows`` consecutive candles; how many of them were bridged)

    Raises
    ------
    IncompleteWindowError: more than ``MAX_BRIDGED`` periods are missing, or the window's
    first period is missing with no candle before it to bridge from.
    """
    step = pd.Timedelta(period(timeframe))
    expected = pd.date_range(end=frame.index[-1], periods=rows, freq=step, name=frame.index.name)
    window = frame.reindex(expected)
    missing = window.index[window["close"].isna()]
    if missing.empty:
        return window, 0
    lead = frame.loc[frame.index < expected[0]].iloc[-1:]  # what a gap at the start leans on
    gap = missing
    if pd.isna(window["close"].iloc[0]):  # the gap reaches back to the candle before the window
        start = lead.index[0] + step if len(lead) else expected[0]
        gap = pd.date_range(start, expected[0] - step, freq=step).append(missing)
    if len(gap) > MAX_BRIDGED or (lead.empty and gap[0] == expected[0]):
        raise IncompleteWindowError(label(gap[0], timeframe), label(gap[-1], timeframe))
    return _bridged(pd.concat([lead, window]), missing).iloc[len(lead) :], len(missing)


def _bridged(window: pd.DataFrame, missing: pd.DatetimeIndex) -> pd.DataFrame:
    """``window`` with the rows at ``missing`` interpolated: prices in log space, by time."""
    out = window.copy()
    prices = [c for c in PRICE_COLUMNS if c in out.columns]
    close = np.exp(np.log(out["close"]).interpolate(method="time"))
    out.loc[missing, prices] = np.repeat(close.loc[missing].to_numpy()[:, None], len(prices), 1)
    volumes = [c for c in ("volume_base", "volume_quote") if c in out.columns]
    out[volumes] = out[volumes].interpolate(method="time")
    return out


def input_rows(config: ModelConfig) -> int:
    """Consecutive candles one point forecast reads: the window, and the candle before it
    for a `log_return` network (its first return)."""
    return config.window + (1 if config.target == "log_return" else 0)


def raw_windows(
    frame: pd.DataFrame, config: ModelConfig, origins: np.ndarray, timeframe: str
) -> tuple[np.ndarray, np.ndarray]:
    """The raw candle values (close first) of the input rows ending at each origin position.

    Returns
    -------
    (windows (m, input_rows, features), the m positions of `origins` whose rows are
    consecutive candles with every value defined)
    """
    rows = input_rows(config)
    columns = ["close", *(c for c in config.features if c != "close")]
    values = frame[columns].to_numpy(dtype=float)
    segments = segment_ids(frame.index, timeframe)
    origins = origins[origins >= rows - 1]
    picked = origins[:, None] + np.arange(-rows + 1, 1)[None, :]
    usable = (segments[picked] == segments[origins][:, None]).all(axis=1)
    usable &= np.isfinite(values[picked]).all(axis=(1, 2))
    return values[picked[usable]], origins[usable]


def recursive_closes(
    model: Any, scaler: ScalerParams, config: ModelConfig, raw: np.ndarray, horizon: int
) -> np.ndarray:
    """The next `horizon` closes after each of n input windows, in price units: (n, horizon).

    Step k feeds the prediction of step k-1 back as a candle: open = high = low = close = the
    predicted close, volumes repeated from the newest real candle (the only future value the
    model gives is the close). Step 1 is an ordinary one-step forecast.

    Parameters
    ----------
    model: the point network; scaler, config: how it was trained.
    raw: (n, input_rows(config), features) raw candle values, close first, from
        :func:`raw_windows` or one bridged input window.
    """
    from models import lstm

    columns = scaler.columns
    prices = np.array([c not in VOLUME_COLUMNS for c in columns])
    out = np.empty((len(raw), horizon))
    for k in range(horizon):
        x = scaler.transform(feature_values(raw, columns, config.target)).astype(np.float32)
        close = to_price(lstm.predict(model, x), raw[:, -1, 0], scaler, config)
        out[:, k] = close
        candle = raw[:, -1:].copy()
        candle[:, :, prices] = close[:, None, None]
        raw = np.concatenate([raw[:, 1:], candle], axis=1)
    return out


class Residuals(NamedTuple):
    """What a model served, or would have served, from every origin of a frame with complete
    input windows: origins (n,), band inputs x (n, window, 3) and long_run (n,)
    (`tasks.bands.Bands.sigma`), point forecasts centre (n, H), and standardized residuals
    z = log(c_(s+h) / point_h) / sigma_h, NaN where the target lies past the frame or across
    a gap."""

    origins: np.ndarray
    x: np.ndarray
    long_run: np.ndarray
    centre: np.ndarray
    z: np.ndarray

    def within(self, rows: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(which origins have their next candle in rows [lo, hi), their residuals with every
        target at or past row hi left out)."""
        lo, hi = rows
        chosen = (self.origins + 1 >= lo) & (self.origins + 1 < hi)
        ahead = self.origins[chosen, None] + np.arange(1, self.z.shape[1] + 1)
        return chosen, np.where(ahead < hi, self.z[chosen], np.nan)

    def served(self, bands: Bands, chosen: np.ndarray, unseen_from: int) -> np.ndarray:
        """(m, H, levels) the quantiles served from the `chosen` origins, as :func:`forecast`
        serves them: their levels read from the newest residuals known at each origin whose
        targets lie at or after row `unseen_from`, the first the networks were not trained
        on (`tasks.bands.recent_offsets`)."""
        at = self.origins[chosen]
        offsets = recent_offsets(self.z, self.origins, at, bands.offsets, unseen_from - 1)
        return bands.quantiles(self.x[chosen], self.long_run[chosen], self.centre[chosen], offsets)


def band_residuals(
    model: Any,
    scaler: ScalerParams,
    config: ModelConfig,
    bands: Bands,
    frame: pd.DataFrame,
    timeframe: str,
) -> Residuals:
    """The :class:`Residuals` of `frame`'s origins under the point network `model` (with its
    `scaler` and `config`) and `bands`."""
    samples = band_samples(frame, config, bands.scaler, bands.return_scale, timeframe)
    raw, origins = raw_windows(frame, config, samples.origin, timeframe)
    chosen = samples.select(np.isin(samples.origin, origins))
    centre = recursive_closes(model, scaler, config, raw, bands.horizon)
    closes = frame["close"].to_numpy(dtype=float)
    rows = np.minimum(origins[:, None] + np.arange(1, bands.horizon + 1), len(frame) - 1)
    actual = np.where(np.isnan(chosen.y), np.nan, closes[rows])
    z = np.log(actual / centre) / bands.sigma(chosen.x, chosen.long_run) if len(origins) else centre
    return Residuals(origins, chosen.x, chosen.long_run, centre, z)


def calibrated(bands: Bands, residuals: Residuals, rows: tuple[int, int]) -> Bands:
    """`bands` with its stored levels read (`tasks.bands.calibrate`) from the residuals of
    the origins whose targets lie in rows [lo, hi): the validation part."""
    _, z = residuals.within(rows)
    offsets, counts = calibrate(z)
    return bands.replace(offsets=offsets, calibrated_on=counts)


def unseen_time(trained: TrainedModel) -> pd.Timestamp:
    """The open time of the first candle `trained` was not trained on: its validation part's
    first target (its test part's, or after its data, without one)."""
    data = trained.data_range
    first = data.get("val_start") or data.get("test_start")
    return pd.Timestamp(first) if first else pd.Timestamp(data["last"]) + pd.Timedelta(1, "ns")


def backtest_bands(
    residuals: Residuals,
    bands: Bands,
    closes: np.ndarray,
    parts: dict[str, tuple[int, int]],
    unseen_from: int,
    garch_timeframe: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Per part, the bands the model would have served from every origin whose next candle
    lies in its rows [lo, hi) of the frame whose `closes` gave `residuals`, scored per
    horizon (`band_scores`) beside the naive band's on the same rows and, given the series'
    `garch_timeframe`, GARCH(1,1)-t's (`tasks.garch.stored_quantiles`); each
    baseline's scores also hold the p-values of the model's against them (`band_tests`). A
    part without any origin with complete windows is left out.

    Each band is served as :func:`forecast` serves it (`Residuals.served`), centred on the
    recursive point forecast. A horizon whose target lies at or past the part's row `hi`, or
    across a gap, is left out.
    """
    origins, horizon = residuals.origins, bands.horizon
    scores = {}
    for part, rows in parts.items():
        chosen, z = residuals.within(rows)
        if not chosen.any():
            continue
        at = origins[chosen]
        quantiles = residuals.served(bands, chosen, unseen_from)
        ahead = np.minimum(at[:, None] + np.arange(1, horizon + 1), len(closes) - 1)
        actual = np.where(np.isfinite(z), closes[ahead], np.nan)
        baselines = {"naive": naive_quantiles(closes, at, horizon)}
        if garch_timeframe is not None:
            baselines["garch"] = stored_quantiles(closes, at, horizon, garch_timeframe)
        scores[part] = scores_beside(actual, quantiles, baselines)
    return scores


def forecast(trained: TrainedModel, frame: pd.DataFrame, horizon: int = 7) -> pd.DataFrame:
    """Predict the closes of the `horizon` periods after the newest candle of `frame`, with
    their bands where the model has a band network.

    The closes come from :func:`recursive_closes`; a short gap in the newest candles is
    bridged first (:func:`input_window`). The bands are the band network's quantiles around
    them, for the horizons it was trained for, their levels read from the residuals of the
    newest year of origins (`tasks.bands.recent_offsets`).

    Parameters
    ----------
    trained: the model, its scaler and config.
    frame: final candles (as for training), oldest first.
    horizon: number of periods ahead, >= 1.

    Returns
    -------
    DataFrame indexed by the forecast candle's UTC `open_time`, columns `step` (1..horizon),
    `close` (price units), `imputed_inputs` (candles of the input window that were bridged),
    and the band edges `low95`, `low80`, `high80`, `high95` (NaN past the band network's
    horizon, or without one).

    Raises
    ------
    ValueError: horizon < 1, or the newest candles miss a value the model reads.
    IncompleteWindowError: the newest window misses more candles than may be bridged.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    config, bands = trained.config, trained.bands
    rows = input_rows(config)
    need = max(rows, config.band_window + 1) if bands is not None else rows
    history, imputed = input_window(frame, need, trained.timeframe)
    raw, _ = raw_windows(history, config, np.array([len(history) - 1]), trained.timeframe)
    if len(raw) == 0:
        raise ValueError(
            f"the newest {rows} candles miss a value of {list(config.features)}; "
            "no window to forecast from"
        )
    closes = recursive_closes(trained.keras_model, trained.scaler, config, raw, horizon)[0]
    step = pd.Timedelta(period(trained.timeframe))
    index = pd.DatetimeIndex(
        [history.index[-1] + k * step for k in range(1, horizon + 1)], name=history.index.name
    )
    out = pd.DataFrame({"step": np.arange(1, horizon + 1, dtype=np.int64), "close": closes}, index)
    out["imputed_inputs"] = imputed
    edges = np.full((horizon, len(BAND_EDGES)), np.nan)
    newest = None if bands is None else newest_inputs(bands, history, trained.timeframe)
    if newest is not None:
        reach = min(horizon, bands.horizon)
        # a year more than the residuals need: each origin's long-run variance reads a year
        rows_back = RECALIBRATION_ORIGINS + LONG_RUN_RETURNS + bands.horizon + need + 1
        recent = frame.iloc[-rows_back:]
        residuals = band_residuals(
            trained.keras_model, trained.scaler, config, bands, recent, trained.timeframe
        )
        unseen = int(recent.index.searchsorted(unseen_time(trained))) - 1
        at = np.array([len(recent) - 1])
        offsets = recent_offsets(residuals.z, residuals.origins, at, bands.offsets, unseen)
        long_run = long_run_variance(frame.iloc[-(LONG_RUN_RETURNS + 1) :], trained.timeframe)
        q = bands.quantiles(newest, long_run[-1:], closes[None, :reach], offsets)[0]
        edges[:reach] = q[:, [bands.levels.index(level) for level in BAND_EDGES.values()]]
    for j, name in enumerate(BAND_EDGES):
        out[name] = edges[:, j]
    return out
