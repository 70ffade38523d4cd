"""The LSTM forecaster in Keras 3: build, fit, predict, and to/from `.keras` bytes.

Knows nothing about candles or prices: it maps (n, window, n_features) float arrays to (n,)
standardized targets. Data preparation lives in tasks/prepare.py, training policy in
tasks/train.py.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.presets import ModelConfig  # noqa: E402

EpochHook = Callable[[int, dict[str, Any]], None]


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; the weights are garbage and were not kept."""


class _StopOnNonFinite(keras.callbacks.Callback):
    """Raise instead of returning a model whose loss went NaN/inf (TerminateOnNaN only stops)."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None:
            _require_finite(float(loss), self.epoch, batch)


def _require_finite(loss: float, epoch: int, batch: int) -> None:
    if not math.isfinite(loss):
        raise TrainingDivergedError(
            f"training loss became {loss} at epoch {epoch + 1}, batch {batch + 1}; "
            "lower the learning rate, enable clipping or check the inputs for NaN"
        )


def _optimizer(config: ModelConfig, learning_rate: float | None = None) -> keras.optimizers.Adam:
    clipping: dict[str, float] = {}
    if config.clipping == "value":
        clipping["clipvalue"] = config.clip
    elif config.clipping == "norm":
        clipping["clipnorm"] = config.clip
    lr = config.learning_rate if learning_rate is None else learning_rate
    return keras.optimizers.Adam(learning_rate=lr, **clipping)


def compile_model(
    model: keras.Model,
    config: ModelConfig,
    learning_rate: float | None = None,
    run_eagerly: bool = False,
) -> keras.Model:
    """(Re)compile with the config's Adam, clipping and loss; a fresh optimizer state.

    `run_eagerly` skips graph tracing (about a second on CPU): faster for a handful of steps,
    slower for many.
    """
    model.compile(
        optimizer=_optimizer(config, learning_rate),
        loss=config.loss,
        run_eagerly=run_eagerly,
        jit_compile="auto"
        if config.jit_compile is None
        else config.jit_compile and not run_eagerly,
    )
    return model


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (initial weights, dropout, shuffling)."""
    keras.utils.set_random_seed(seed)


def build(config: ModelConfig, n_features: int) -> keras.Model:
    """Stacked LSTM(units...) -> Dense(1); `ensemble` such stacks averaged in one model.

    Layers are named lstm_1, lstm_2, ... and output (one stack), or m<k>_lstm_<i>,
    m<k>_output and output (ensemble). Seeds everything with `config.seed` first, so the
    initial weights are reproducible; the model comes back compiled.
    """
    set_seed(config.seed)
    inputs = keras.Input(shape=(config.window, n_features), name="window")
    heads = []
    for member in range(config.ensemble):
        prefix = "" if config.ensemble == 1 else f"m{member + 1}_"
        h = inputs
        for i, units in enumerate(config.units):
            last = i == len(config.units) - 1
            h = keras.layers.LSTM(
                units,
                return_sequences=not last,
                dropout=config.dropout,
                unroll=config.unroll,
                name=f"{prefix}lstm_{i + 1}",
            )(h)
        heads.append(keras.layers.Dense(1, name=f"{prefix}output" if prefix else "output")(h))
    outputs = heads[0] if len(heads) == 1 else keras.layers.Average(name="output")(heads)
    model = keras.Model(inputs, outputs, name=f"lstm_{config.name}")
    return compile_model(model, config)


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    batch_size: int,
    patience: int | None = None,
    on_epoch_end: EpochHook | None = None,
) -> dict[str, list[float]]:
    """Train in place; return the per-epoch history (loss, val_loss, whatever the hook adds).

    Early stopping on `val_loss` with the best weights restored when `patience` is set and a
    validation part exists. `on_epoch_end(epoch, logs)` may add entries to `logs` before they
    are recorded (e.g. a price-space MAPE).

    Raises
    ------
    TrainingDivergedError: the loss became NaN or infinite.
    """
    callbacks: list[keras.callbacks.Callback] = [_StopOnNonFinite()]
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end))
    has_val = val is not None and len(val[1]) > 0
    if patience is not None and has_val:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    history = model.fit(
        _batches(train, batch_size, shuffle=True),
        validation_data=_batches(val, batch_size, shuffle=False) if has_val else None,
        epochs=epochs,
        shuffle=False,  # the batches are reshuffled each epoch by _batches
        verbose=0,
        callbacks=callbacks,
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _batches(data: tuple[np.ndarray, np.ndarray], batch_size: int, shuffle: bool) -> Any:
    """``fit``'s input as a ``tf.data`` pipeline on one thread, without autotuning or prefetch,
    reshuffled each epoch when ``shuffle`` (seeded by ``set_seed``).

    Given numpy arrays, Keras builds a pipeline that prefetches with an autotuned thread pool
    as large as the machine. Slicing these small arrays needs no such pool, and two trainings
    side by side fight over it: on 2 cores two ``default`` trainings at once took 1.15-1.6x
    the time of one with Keras's pipeline and 0.9-1.2x with this one, which also trains
    alone about 25% faster (``parallel_ceiling`` in bench/daily_run.py).
    """
    import tensorflow as tf

    x, y = data
    batches = tf.data.Dataset.from_tensor_slices((x, y.reshape(-1, 1)))
    if shuffle:
        batches = batches.shuffle(len(y), reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return batches.batch(batch_size).with_options(options)


def train_steps(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch_end: EpochHook | None = None,
) -> dict[str, list[float]]:
    """A few epochs as direct ``train_on_batch`` steps, shuffled per epoch like `fit`.

    For a fine-tune of a handful of steps: `fit`'s set-up (data adapter, callbacks, history)
    costs about as much as the steps themselves. Returns the per-epoch history like `fit`
    (loss: the epoch's mean, plus whatever `on_epoch_end` adds); no validation pass.

    Raises
    ------
    TrainingDivergedError: the loss became NaN or infinite.
    """
    x, y = train
    y = y.reshape(-1, 1)
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {}
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        total = 0.0
        for batch, start in enumerate(range(0, len(y), batch_size)):
            rows = order[start : start + batch_size]
            loss = float(model.train_on_batch(x[rows], y[rows]))
            _require_finite(loss, epoch, batch)
            total += loss * len(rows)
        logs = {"loss": total / len(y)}
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(float(value))
    return history


def predict(model: keras.Model, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Standardized predictions, shape (n,); direct calls (no predict-loop start-up cost)."""
    if len(x) == 0:
        return np.empty(0, dtype=np.float32)
    parts = [
        keras.ops.convert_to_numpy(model(x[i : i + chunk], training=False))
        for i in range(0, len(x), chunk)
    ]
    return np.concatenate(parts).reshape(-1)


def to_bytes(model: keras.Model) -> bytes:
    """The model (architecture, weights, optimizer state) in Keras 3's native `.keras` format."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


def from_bytes(data: bytes) -> keras.Model:
    """Load `.keras` bytes with safe_mode=True (no arbitrary code from the file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path, compile=True, safe_mode=True)
