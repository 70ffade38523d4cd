"""The served twin: the evaluation twin's recipe refitted on every candle, which forecasts."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from models import lstm
from models.presets import preset
from tasks.forecast import forecast
from tasks.registry import forecast_rows
from tasks.train import refit, train_model, update_model
from tasks.trained import TrainedModel
from tests.modelling.conftest import make_candles, wavy_closes

TINY = preset("tiny")


@pytest.fixture(scope="module")
def closes() -> np.ndarray:
    return wavy_closes(300)


@pytest.fixture(scope="module")
def served(closes) -> TrainedModel:
    frame = make_candles(closes[:-1])
    return refit(train_model(frame, TINY, track_price_mape=False), None, frame, False)


def _weights(model) -> list[np.ndarray]:
    return model.keras_model.get_weights() + model.bands.keras_model.get_weights()


def test_a_retrain_is_refitted_on_the_candles_its_test_part_held_out(served):
    twin = served.served
    assert served.serving is twin and twin.serving is twin and twin.served is None
    assert twin.kind == "retrain" and twin.config == TINY.replace(test_fraction=0.0)
    assert served.data_range["test_start"] is not None and twin.data_range["test_start"] is None
    assert twin.data_range["last"] == served.data_range["last"]
    rows = served.data_range["samples"]
    assert twin.data_range["samples"]["train"] > rows["train"] + rows["val"]
    assert twin.scaler != served.scaler  # its own scaler, fit on its own training rows
    assert twin.bands is not None and twin.metrics["test"] is None


def test_a_fine_tuned_twin_learns_the_newest_candle_and_the_gated_twin_does_not(served, closes):
    """The day's candle reaches the served twin's training, not the evaluation twin's: its
    test part stays out of sample for the gate."""
    frames = [make_candles(closes), make_candles(np.append(closes[:-1], closes[-1] * 1.3))]
    tuned = []
    for frame in frames:
        evaluated = update_model(served, frame, TINY, "fine_tune", track_price_mape=False)
        tuned.append(refit(evaluated, served, frame, track_price_mape=False))
    assert all(t.kind == "fine_tune" and t.served.kind == "fine_tune" for t in tuned)
    assert tuned[0].served.fine_tunes_since_retrain == served.served.fine_tunes_since_retrain + 1
    for a, b in zip(_weights(tuned[0]), _weights(tuned[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    changed = zip(_weights(tuned[0].served), _weights(tuned[1].served), strict=True)
    assert any(not np.array_equal(a, b) for a, b in changed)


def test_a_fine_tune_of_a_model_without_a_twin_refits_one(served, closes):
    frame, orphan = make_candles(closes), dataclasses.replace(served, served=None)
    evaluated = update_model(orphan, frame, TINY, "fine_tune", track_price_mape=False)
    alone = refit(evaluated, orphan, frame, track_price_mape=False)
    assert evaluated.kind == "fine_tune" and alone.served.kind == "retrain"


def test_the_served_twin_forecasts_and_round_trips(served, closes):
    frame = make_candles(closes[:-1])
    assert served.serving is served.served  # the network the daily flow forecasts with
    by_twin = forecast(served.serving, frame, horizon=3)
    rows = forecast_rows(by_twin, frame)
    assert [r["horizon"] for r in rows] == [1, 2, 3]
    np.testing.assert_array_equal([r["predicted_close"] for r in rows], by_twin["close"])
    np.testing.assert_array_equal([r["high95"] for r in rows], by_twin["high95"])
    assert not np.allclose(forecast(served, frame, horizon=3)["close"], by_twin["close"])

    meta = json.loads(served.metadata_json())
    again = TrainedModel.from_parts(
        served.model_bytes, meta, served.band_bytes, served.served_bytes
    )
    assert again.metadata() == served.metadata()
    x = np.zeros((2, TINY.window, len(TINY.features)), np.float32)
    np.testing.assert_array_equal(
        lstm.predict(again.served.keras_model, x), lstm.predict(served.served.keras_model, x)
    )
    with pytest.raises(ValueError, match="served twin whose bytes are missing"):
        TrainedModel.from_parts(served.model_bytes, meta, served.band_bytes)
