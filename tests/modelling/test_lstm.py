"""The Keras model: the lecture's architecture, .keras round trip, NaN handling."""

from __future__ import annotations

import numpy as np
import pytest

from models import lstm
from models.presets import PRESETS, ModelConfig, preset


def test_seed_preset_builds_the_lecture_architecture():
    config = preset("seed")
    assert (config.features, config.target, config.window) == (("close",), "level", 7)
    assert (config.epochs, config.batch_size, config.patience) == (500, 64, None)
    model = lstm.build(config, n_features=1)
    layers = [layer for layer in model.layers if layer.name != "window"]
    assert [type(layer).__name__ for layer in layers] == ["LSTM", "LSTM", "LSTM", "Dense"]
    assert [layer.units for layer in layers] == [256, 512, 512, 1]
    assert [layer.return_sequences for layer in layers[:3]] == [True, True, False]
    assert model.input_shape == (None, 7, 1)
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "Adam"
    assert float(optimizer.learning_rate) == pytest.approx(5e-5)
    assert optimizer.clipvalue == 4.0
    assert optimizer.clipnorm is None


def test_presets_are_plain_data():
    for config in PRESETS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="close"):
        ModelConfig(name="x", features=("high",))


def test_keras_bytes_round_trip_gives_identical_predictions():
    config = preset("tiny")
    model = lstm.build(config, n_features=2)
    x = np.random.default_rng(0).normal(size=(16, config.window, 2)).astype(np.float32)
    data = lstm.to_bytes(model)
    assert data[:2] == b"PK"  # a .keras zip archive, not HDF5
    again = lstm.from_bytes(data)
    np.testing.assert_array_equal(lstm.predict(model, x), lstm.predict(again, x))


def test_nan_loss_stops_training_with_an_error():
    config = preset("tiny")
    model = lstm.build(config, n_features=1)
    x = np.zeros((32, config.window, 1), dtype=np.float32)
    y = np.full(32, np.nan, dtype=np.float32)
    with pytest.raises(lstm.TrainingDivergedError, match="nan"):
        lstm.fit(model, (x, y), None, epochs=2, batch_size=16)
