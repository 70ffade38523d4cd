"""The Keras model: the lecture's architecture, .keras round trip, NaN handling."""

from __future__ import annotations

import contextlib
import gc
import warnings

import keras
import numpy as np
import pytest

from models import inference, lstm, training
from models.presets import PRESETS, ModelConfig, preset


def test_seed_preset_builds_the_lecture_architecture():
    config = preset("lecture")
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
    assert model.loss == "mse"


def test_unrolling_and_xla_change_the_speed_not_the_math():
    """`unroll` and `jit_compile` (how `lecture` is shipped) give the network of the Keras
    defaults: the same weights, the same predictions and the same training step."""
    plain = preset("tiny").replace(units=(6, 5), unroll=False, jit_compile=False)
    fast = plain.replace(unroll=True, jit_compile=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, plain.window, 1)).astype(np.float32)
    y = rng.normal(size=32).astype(np.float32)
    models = [lstm.build(config, n_features=1) for config in (plain, fast)]
    assert [w.shape for w in models[0].get_weights()] == [w.shape for w in models[1].get_weights()]
    models[1].set_weights(models[0].get_weights())
    np.testing.assert_allclose(lstm.predict(models[0], x), lstm.predict(models[1], x), atol=1e-6)
    assert models[1].jit_compile and not models[0].jit_compile
    losses = [m.train_on_batch(x, y.reshape(-1, 1)) for m in models]  # one step, same batch
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    np.testing.assert_allclose(lstm.predict(models[0], x), lstm.predict(models[1], x), atol=1e-5)


def test_presets_are_plain_data():
    for config in PRESETS.values():
        assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="close"):
        ModelConfig(name="x", features=("high",))


def test_keras_bytes_round_trip_gives_identical_predictions(tmp_path):
    """As the registry stores them: a trained model (its optimizer built), loaded back with
    no variable skipped (Keras warns when saved state does not fit). The file holds the
    optimizer state too, for whoever resumes from it; candlecast's own loads leave it out."""
    config = preset("tiny")
    model = lstm.build(config, n_features=2)
    x = np.random.default_rng(0).normal(size=(16, config.window, 2)).astype(np.float32)
    training.fit(model, (x, x[:, -1, 0]), None, epochs=1, batch_size=8)
    data = lstm.to_bytes(model)
    assert data[:2] == b"PK"  # a .keras zip archive, not HDF5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = lstm.from_bytes(data)
        (tmp_path / "model.keras").write_bytes(data)
        whole = keras.saving.load_model(tmp_path / "model.keras", compile=True, safe_mode=True)
    np.testing.assert_array_equal(lstm.predict(model, x), lstm.predict(again, x))
    assert getattr(again, "optimizer", None) is None  # never compiled
    assert int(whole.optimizer.iterations) == int(model.optimizer.iterations) == 2


@pytest.mark.parametrize("direct_steps", [False, True], ids=["fit", "train_steps"])
def test_nan_loss_stops_training_with_an_error(direct_steps):
    config = preset("tiny")
    model = lstm.build(config, n_features=1)
    x = np.zeros((32, config.window, 1), dtype=np.float32)
    y = np.full(32, np.nan, dtype=np.float32)
    with pytest.raises(training.TrainingDivergedError, match="nan at epoch 1, batch 1"):
        if direct_steps:
            training.train_steps(model, (x, y), epochs=2, batch_size=16, seed=0)
        else:
            training.fit(model, (x, y), None, epochs=2, batch_size=16)


def _train_step_graphs() -> int:
    """Traced train-step graphs alive in this process, after a full garbage collection."""
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(
        isinstance(o, FuncGraph) and o.name.startswith("one_step_on") for o in gc.get_objects()
    )


@pytest.mark.parametrize("direct_steps", [False, True], ids=["fit", "train_steps"])
def test_a_finished_training_leaves_no_traced_graph_behind(direct_steps):
    """TensorFlow's gradient registry kept every traced train step alive (a standing worker
    grew 10 MiB a symbol): after a training whose model is gone, none of its graphs remain,
    also when the training failed."""
    from tensorflow.python.framework import ops

    config = preset("tiny")
    x = np.random.default_rng(4).normal(size=(24, config.window, 1)).astype(np.float32)
    rows = {"finite": x[:, -1, 0], "nan": np.full(24, np.nan, dtype=np.float32)}

    def train(y: np.ndarray) -> None:
        model = lstm.build(config, n_features=1)
        with contextlib.suppress(training.TrainingDivergedError):
            if direct_steps:
                training.train_steps(model, (x, y), epochs=1, batch_size=8, seed=0)
            else:
                training.fit(model, (x, y), None, epochs=1, batch_size=8)

    train(rows["finite"])  # Keras's and TensorFlow's own first-use state, once per process
    graphs, registered = _train_step_graphs(), set(ops._gradient_registry._registry)
    for y in (rows["finite"], rows["nan"], rows["finite"]):
        train(y)
    assert set(ops._gradient_registry._registry) - registered == set()
    assert _train_step_graphs() == graphs


def test_direct_steps_train_every_row_once_per_epoch_and_log_each_epoch():
    config = preset("tiny")
    model = lstm.build(config, n_features=1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, config.window, 1)).astype(np.float32)
    y = rng.normal(size=40).astype(np.float32)
    before = model.optimizer.iterations.numpy()
    seen = []
    history = training.train_steps(
        model, (x, y), epochs=3, batch_size=16, seed=0,
        on_epoch_end=lambda epoch, logs: seen.append(epoch) or logs.update(extra=epoch * 2.0),
    )  # fmt: skip
    assert model.optimizer.iterations.numpy() - before == 3 * 3  # batches of 16, 16, 8
    assert seen == [0, 1, 2] and history["extra"] == [0.0, 2.0, 4.0]
    assert len(history["loss"]) == 3 and all(np.isfinite(history["loss"]))


def test_fit_batches_hold_every_row_once_per_epoch_reshuffled_on_one_thread():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 7, 2)).astype(np.float32)
    y = np.arange(40, dtype=np.float32)  # each row's target is its index

    def epoch(batches) -> list[int]:
        order = []
        for xb, yb in batches:
            rows = yb.numpy().reshape(-1).astype(int)
            np.testing.assert_array_equal(xb.numpy(), x[rows])  # each window with its target
            order += rows.tolist()
        return order

    lstm.set_seed(0)
    batches = training._batches((x, y), batch_size=16, shuffle=True)
    assert [len(yb) for _, yb in batches] == [16, 16, 8]
    first, second = epoch(batches), epoch(batches)
    assert sorted(first) == sorted(second) == list(range(40))  # every row once per epoch
    assert first != second and list(range(40)) not in (first, second)  # reshuffled each epoch
    assert epoch(training._batches((x, y), batch_size=16, shuffle=False)) == list(range(40))
    options = batches.options()  # no thread pool of the machine's size to fight over
    assert options.threading.private_threadpool_size == 1
    assert options.autotune.enabled is False


@pytest.mark.parametrize(
    "config",
    [
        preset("default"),
        preset("lecture"),  # 256/512/512, sequences passed between layers
        preset("tiny").replace(units=(6, 5), ensemble=3, dropout=0.3, unroll=False),
        preset("tiny").replace(features=("close", "high", "volume_base"), units=(7, 3)),
    ],
    ids=["default", "lecture", "ensemble-dropout", "three-features"],
)
def test_numpy_forward_pass_gives_what_keras_gives(config: ModelConfig) -> None:
    """`predict` runs the networks `build` makes in NumPy: the same outputs as a Keras call,
    before and after a training step changes the weights."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, config.window, len(config.features))).astype(np.float32)
    model = lstm.build(config, n_features=len(config.features))
    assert inference.numpy_forward(model) is not None

    def keras_call() -> np.ndarray:
        return np.asarray(model(x, training=False)).reshape(-1)

    np.testing.assert_allclose(lstm.predict(model, x), keras_call(), rtol=1e-4, atol=1e-5)
    model.train_on_batch(x[:64], rng.normal(size=(64, 1)).astype(np.float32))
    np.testing.assert_allclose(lstm.predict(model, x), keras_call(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lstm.predict(model, x, chunk=7), keras_call(), rtol=1e-4, atol=1e-5)


def test_a_network_built_otherwise_is_predicted_by_keras() -> None:
    """A layer the NumPy pass does not implement exactly (here a GRU, and an LSTM with another
    activation) makes `predict` fall back to Keras instead of computing something else."""
    x = np.random.default_rng(3).normal(size=(20, 7, 1)).astype(np.float32)
    inputs = keras.Input(shape=(7, 1), name="window")
    for layer in (
        keras.layers.GRU(4, name="lstm_1"),
        keras.layers.LSTM(4, activation="relu", name="lstm_1"),
    ):
        model = keras.Model(inputs, keras.layers.Dense(1, name="output")(layer(inputs)))
        assert inference.numpy_forward(model) is None
        expected = np.asarray(model(x, training=False)).reshape(-1)
        np.testing.assert_allclose(lstm.predict(model, x), expected, rtol=1e-6)


def test_a_tensorflow_whose_gradient_registry_changed_fails_loudly(monkeypatch, caplog):
    """The workaround edits a private TensorFlow registry: a TensorFlow laid out otherwise is
    an error naming what to do, and an untested version a warning, never a quiet leak."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    from models import tf_gradients

    tf_gradients._registry.cache_clear()
    monkeypatch.setattr(tf, "__version__", "9.9.0")
    monkeypatch.setattr(ops, "_gradient_registry", object())
    try:
        with pytest.raises(tf_gradients.GradientRegistryChanged, match="--lifetime"):
            with tf_gradients.releasing_traced_gradients():
                pass
        assert "tested on TensorFlow 2.21, this is 9.9.0" in caplog.text
    finally:
        tf_gradients._registry.cache_clear()
