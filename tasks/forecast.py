"""Recursive multi-day forecast of the close, in price units, from a trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.core.errors import IncompleteWindowError
from candlecast.core.identifiers import label, period
from models.presets import PRICE_COLUMNS
from tasks.prepare import latest_window, to_price
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


def forecast(trained: TrainedModel, frame: pd.DataFrame, horizon: int = 7) -> pd.DataFrame:
    """Predict the closes of the `horizon` periods after the newest candle of `frame`.

    Step k feeds the prediction of step k-1 back as a candle: open = high = low = close = the
    predicted close, volumes repeated from the newest real candle (the only future value the
    model gives is the close). Step 1 is an ordinary one-step forecast. A short gap in the
    newest candles is bridged first (:func:`input_window`).

    Parameters
    ----------
    trained: the model, its scaler and config.
    frame: final candles (as for training), oldest first.
    horizon: number of periods ahead, >= 1.

    Returns
    -------
    DataFrame indexed by the forecast candle's UTC `open_time`, columns `step` (1..horizon),
    `close` (price units) and `imputed_inputs` (candles of the input window that were bridged).

    Raises
    ------
    ValueError: horizon < 1.
    IncompleteWindowError: the newest window misses more candles than may be bridged.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    from models import lstm

    config, step = trained.config, pd.Timedelta(period(trained.timeframe))
    history, imputed = input_window(frame, config.window + 1, trained.timeframe)
    rows = []
    for k in range(1, horizon + 1):
        x = latest_window(history, config, trained.scaler, trained.timeframe)
        z = lstm.predict(trained.keras_model, x)
        base = history["close"].to_numpy()[-1:]
        close = float(to_price(z, base, trained.scaler, config)[0])
        when = history.index[-1] + step
        rows.append((when, k, close))
        candle = history.iloc[[-1]].copy()
        candle.index = pd.DatetimeIndex([when], name=history.index.name)
        candle[[c for c in PRICE_COLUMNS if c in candle.columns]] = close
        history = pd.concat([history.iloc[1:], candle])
    out = pd.DataFrame(rows, columns=["open_time", "step", "close"]).set_index("open_time")
    out["step"] = out["step"].astype(np.int64)
    out["imputed_inputs"] = imputed
    return out
