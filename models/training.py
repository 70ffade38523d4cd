"""The two training loops of the LSTM: Keras's ``fit`` with early stopping, and direct
``train_on_batch`` steps for a fine-tune of a handful of steps; both refuse a diverged loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from models.tf_gradients import releasing_traced_gradients

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


def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    batch_size: int,
    patience: int | None = None,
    on_epoch_end: EpochHook | None = None,
    seed: int | None = None,
) -> dict[str, list[float]]:
    """Train in place; return the per-epoch history (loss, val_loss, whatever the hook adds).

    `seed` fixes the order the training windows are shuffled in, epoch by epoch.

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
    with releasing_traced_gradients():
        history = model.fit(
            _batches(train, batch_size, shuffle=True, seed=seed),
            validation_data=_batches(val, batch_size, shuffle=False) if has_val else None,
            epochs=epochs,
            shuffle=False,  # the batches are reshuffled each epoch by _batches
            verbose=0,
            callbacks=callbacks,
        )
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _batches(
    data: tuple[np.ndarray, np.ndarray], batch_size: int, shuffle: bool, seed: int | None = None
) -> Any:
    """``fit``'s input as a ``tf.data`` pipeline on one thread, without autotuning or prefetch,
    reshuffled each epoch when ``shuffle`` (with ``seed``, else by ``set_seed``'s).

    Given numpy arrays, Keras builds a pipeline that prefetches with an autotuned thread pool
    as large as the machine. Slicing these small arrays needs no such pool, and two trainings
    side by side fight over it (``parallel_ceiling`` in bench/daily_run.py measures it).
    """
    import tensorflow as tf

    x, y = data
    batches = tf.data.Dataset.from_tensor_slices((x, _columns(y)))
    if shuffle:
        batches = batches.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return batches.batch(batch_size).with_options(options)


def _columns(y: np.ndarray) -> np.ndarray:
    """Targets as (n, outputs): a 1-D target is one output."""
    return y.reshape(-1, 1) if y.ndim == 1 else y


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
    y = _columns(y)
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {}
    with releasing_traced_gradients():
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
