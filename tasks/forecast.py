"""Recursive multi-day forecast of the close, in price units, from a trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from candlecast.identifiers import period
from models.presets import PRICE_COLUMNS
from tasks.prepare import latest_window, to_price
from tasks.train import TrainedModel


def forecast(trained: TrainedModel, frame: pd.DataFrame, horizon: int = 7) -> pd.DataFrame:
    """Predict the closes of the `horizon` periods after the newest candle of `frame`.

    Step k feeds the prediction of step k-1 back as a candle: open = high = low = close = the
    predicted close, volumes repeated from the newest real candle (the only future value the
    model gives is the close). Step 1 is an ordinary one-step forecast.

    Parameters
    ----------
    trained: the model, its scaler and config.
    frame: final candles (as for training); the newest `window` (+1) rows must be consecutive.
    horizon: number of periods ahead, >= 1.

    Returns
    -------
    DataFrame indexed by the forecast candle's UTC `open_time`, columns `step` (1..horizon)
    and `close` (price units).

    Raises
    ------
    ValueError: horizon < 1, or the newest candles do not form a complete window.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    from models import lstm

    config, step = trained.config, pd.Timedelta(period(trained.timeframe))
    need = config.window + 1
    history = frame.iloc[-need:].copy()
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
    return out
