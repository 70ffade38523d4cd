"""Walking a test window along the served path: how the forecasts that are served would have
done, block by block, with the weights and bands each block was actually served with.

A version's evaluation twin is static over its test window, hundreds of days long, while the
model that forecasts is fine-tuned every day and its bands read the newest residuals.
:func:`served_walk` replays that path across the window, so the champion gate tests the
coverage of the bands that are served, not of a model that never is. The benchmark
(`bench/forecast_quality.py`) walks the same way and scores through the same :class:`Walk`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tasks.evaluate import evaluate
from tasks.forecast import band_residuals, unseen_time
from tasks.intervals import BAND_EDGES, BAND_LEVELS, SERVED_DAYS, band_scores
from tasks.prepare import windows
from tasks.train import fine_tune
from tasks.trained import TrainedModel, predict_prices

WALK_EVERY = 7
"""Days between the fine-tunes of a gate's walk: the daily flow fine-tunes every day, and a
weekly step makes the walk cost a few trainings, not hundreds (docs/benchmarks.md)."""


@dataclass
class Walk:
    """Predictions gathered over a walked window, and the cost of producing them."""

    actual: list[np.ndarray] = field(default_factory=list)
    predicted: list[np.ndarray] = field(default_factory=list)
    persistence: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    retrains: int = 0
    fine_tunes: int = 0
    narrow: int = 0  # retrains the served bands asked for, too narrow since the last retrain
    origins: list[np.ndarray] = field(default_factory=list)
    quantiles: list[np.ndarray] = field(default_factory=list)

    def add(self, trained: TrainedModel, frame: pd.DataFrame, start: int, stop: int) -> None:
        """Predict the targets at rows [start, stop) with `trained`'s fixed weights, and the
        bands from the origins start - 1 .. stop - 2, 1..H days ahead, as the daily flow
        serves them (their levels from the residuals known at each origin)."""
        samples = windows(frame, trained.config, trained.scaler, trained.timeframe)
        subset = samples.select(samples.target_time.isin(frame.index[start:stop]))
        self.actual.append(subset.actual_close)
        self.persistence.append(subset.base_close)
        self.predicted.append(predict_prices(trained, subset))
        bands = trained.bands
        if bands is None:
            return
        residuals = band_residuals(
            trained.keras_model, trained.scaler, trained.config, bands, frame, trained.timeframe
        )
        block, _ = residuals.within((start, stop))
        unseen = int(frame.index.searchsorted(unseen_time(trained)))
        self.origins.append(residuals.origins[block])
        self.quantiles.append(residuals.served(bands, block, unseen))

    def metrics(self) -> dict[str, float | int]:
        """The point forecasts scored against persistence (`tasks.evaluate.evaluate`)."""
        return evaluate(
            *(np.concatenate(v) for v in (self.actual, self.predicted, self.persistence))
        )

    def served(self, closes: np.ndarray, since: int, until: int) -> list[tuple[float, ...]]:
        """The newest `SERVED_DAYS` of the walked h=1 bands from origins at or after row
        `since` whose target row is at most `until`, as `db.forecasts.served_bands` reads
        the served ones: (realised close, low95, low80, high80, high95)."""
        if not self.quantiles:
            return []
        origins = self.band_origins()
        keep = np.flatnonzero((origins >= since) & (origins + 1 <= until))[-SERVED_DAYS:]
        columns = [BAND_LEVELS.index(level) for level in BAND_EDGES.values()]
        edges = np.concatenate(self.quantiles)[keep, 0][:, columns]
        return [(closes[o + 1], *row) for o, row in zip(origins[keep], edges.tolist(), strict=True)]

    def band_origins(self) -> np.ndarray:
        return np.concatenate(self.origins) if self.origins else np.empty(0, np.int64)

    def band_scores(self, closes: np.ndarray) -> dict[str, Any] | None:
        """The walked bands scored per horizon (`tasks.intervals.band_scores`) against the
        `closes` of the walked frame; None without bands."""
        if not self.quantiles:
            return None
        origins = self.band_origins()
        actual = realised(closes, origins, self.quantiles[0].shape[1])
        return band_scores(actual, np.concatenate(self.quantiles))


def realised(closes: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(origin, h - 1) the close h days after each origin; NaN past the last candle."""
    rows = origins[:, None] + np.arange(1, horizon + 1)[None, :]
    return np.where(rows < closes.size, closes[np.minimum(rows, closes.size - 1)], np.nan)


def served_walk(trained: TrainedModel, frame: pd.DataFrame, every: int = WALK_EVERY) -> Walk:
    """`trained`'s test window walked along the served path, in `every`-day blocks.

    The evaluation twin serves the first block: it stands in for the twin refitted at the
    window's start, having trained on the same candles. At the start of each later block it
    is fine-tuned as the served twin is (`tasks.train.fine_tune`, ``test_fraction=0``) on
    every candle before the block, and serves the block. Nothing after a block's start
    reaches the weights or the bands that forecast it.
    """
    start = int(frame.index.searchsorted(pd.Timestamp(trained.data_range["test_start"])))
    model = trained.replace(config=trained.config.replace(test_fraction=0.0))
    walk = Walk()
    for block in range(start, len(frame), every):
        if block > start:
            began = time.perf_counter()
            model = fine_tune(model, frame.iloc[:block], track_price_mape=False)
            walk.seconds += time.perf_counter() - began
            walk.fine_tunes += 1
        walk.add(model, frame, block, min(block + every, len(frame)))
    return walk
