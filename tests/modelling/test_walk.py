"""The served path walked across a test window (`tasks.walk.served_walk`): what the champion
gate tests the bands on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.presets import preset
from tasks.intervals import BAND_EDGES, BAND_LEVELS, SERVED_DAYS
from tasks.registry import WindowScore, walk_scores
from tasks.train import train_model
from tasks.trained import TrainedModel
from tasks.walk import served_walk
from tests.modelling.conftest import make_candles, wavy_closes

TINY = preset("tiny")


@pytest.fixture(scope="module")
def closes() -> np.ndarray:
    return wavy_closes(300)


@pytest.fixture(scope="module")
def trained(closes) -> TrainedModel:
    return train_model(make_candles(closes), TINY, track_price_mape=False)


def test_one_block_is_the_static_test_part(trained, closes):
    """A walk that never fine-tunes serves the evaluation twin across its whole window: its
    scores are the version's own test metrics, through the same code path."""
    frame = make_candles(closes)
    walk = walk_scores(trained, frame)
    static = served_walk(trained, frame, every=len(frame))
    assert static.fine_tunes == 0
    test = trained.metrics["test"]
    assert static.metrics()["mape"] == pytest.approx(test["mape"], rel=1e-12)
    scores = static.band_scores(frame["close"].to_numpy())
    for key in ("n", "cov80", "cov95", "winkler95", "pinball"):
        np.testing.assert_allclose(scores[key], test["bands"]["model"][key], rtol=1e-12)
    # the weekly walk fine-tunes at every later block and scores the same days
    days = test["n"]
    assert walk["every_days"] == 7 and walk["fine_tunes"] == math.ceil(days / 7) - 1
    assert walk["n"] == days and walk["bands"]["model"]["n"][0] == days
    assert WindowScore.of(walk).cov80 == walk["bands"]["model"]["cov80"][0]


def test_nothing_after_a_blocks_start_reaches_its_forecasts(trained, closes):
    """A candle changed inside the last block changes none of the forecasts made before it,
    and does change those made after it: the walk fine-tunes only on what each block knew."""
    frame = make_candles(closes)
    changed = closes.copy()
    changed[-3] *= 1.2  # a target of the last block, and an input to the two after it
    walks = [served_walk(trained, f, every=7) for f in (frame, make_candles(changed))]
    before = [np.concatenate(w.predicted)[:-2] for w in walks]
    np.testing.assert_array_equal(*before)
    quantiles = [np.concatenate(w.quantiles) for w in walks]
    np.testing.assert_array_equal(quantiles[0][:-2], quantiles[1][:-2])
    after = [np.concatenate(w.predicted)[-2:] for w in walks]
    assert not np.allclose(*after)
    assert not np.allclose(quantiles[0][-2:], quantiles[1][-2:])


def test_served_rows_are_the_h1_bands_known_since_a_row(trained, closes):
    """`Walk.served` reads the walked bands as the flow reads the stored ones
    (`db.forecasts.served_bands`): realised close and the four band edges at h=1, only those
    forecast from `since` on whose target is at most `until`, the newest `SERVED_DAYS`."""
    frame = make_candles(closes)
    walk = served_walk(trained, frame, every=7)
    origins, bands = walk.band_origins(), np.concatenate(walk.quantiles)[:, 0]
    since, until = int(origins[3]), int(origins[20]) + 1
    rows = walk.served(closes, since=since, until=until)
    edges = [BAND_LEVELS.index(level) for level in BAND_EDGES.values()]
    expected = [(closes[o + 1], *bands[i, edges]) for i, o in enumerate(origins) if 3 <= i <= 20]
    np.testing.assert_allclose(rows, expected)
    low95, low80, high80, high95 = np.asarray(rows)[:, 1:].T
    assert (low95 <= low80).all() and (low80 <= high80).all() and (high80 <= high95).all()
    assert len(walk.served(closes, since=0, until=len(closes))) == len(origins) < SERVED_DAYS
