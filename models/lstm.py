"""The LSTM forecaster in Keras 3: build, fit, predict, and to/from `.keras` bytes.

Knows nothing about candles or prices: it maps (n, window, n_features) float arrays to (n,)
standardized targets. Data preparation lives in tasks/prepare.py, training policy in
tasks/train.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models.presets import ModelConfig  # noqa: E402

EpochHook = Callable[[int, dict[str, Any]], None]
ONE_BLAS_THREAD_BELOW_FLOP = 1e8  # a NumPy forward pass this small runs on one BLAS thread
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"  # how tf.custom_gradient names what it registers


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
    m<k>_output and output (ensemble). Every initializer and dropout mask gets its own seed
    derived from `config.seed`: Keras would otherwise draw them from Python's global
    `random`, which Prefect's threads draw from too, so the initial weights would depend on
    their timing. The model comes back compiled.
    """
    set_seed(config.seed)
    inputs = keras.Input(shape=(config.window, n_features), name="window")
    heads = []
    for member in range(config.ensemble):
        prefix = "" if config.ensemble == 1 else f"m{member + 1}_"
        seeds = iter(range(config.seed + 1000 * member, config.seed + 1000 * (member + 1)))
        h = inputs
        for i, units in enumerate(config.units):
            last = i == len(config.units) - 1
            h = keras.layers.LSTM(
                units,
                return_sequences=not last,
                dropout=config.dropout,
                unroll=config.unroll,
                kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
                recurrent_initializer=keras.initializers.Orthogonal(seed=next(seeds)),
                seed=next(seeds),
                name=f"{prefix}lstm_{i + 1}",
            )(h)
        output = keras.layers.Dense(
            1,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
            name=f"{prefix}output" if prefix else "output",
        )
        heads.append(output(h))
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
    side by side fight over it: on 2 cores two ``default`` trainings at once took 1.15-1.6x
    the time of one with Keras's pipeline and 0.9-1.2x with this one, which also trains
    alone about 25% faster (``parallel_ceiling`` in bench/daily_run.py).
    """
    import tensorflow as tf

    x, y = data
    batches = tf.data.Dataset.from_tensor_slices((x, y.reshape(-1, 1)))
    if shuffle:
        batches = batches.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
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


@contextlib.contextmanager
def releasing_traced_gradients() -> Iterator[None]:
    """Around a training: drop the gradient functions TensorFlow registered while it ran.

    Keras's train step (TensorFlow backend) sums the gradients through the distribution
    strategy's ``all_reduce``, a ``tf.custom_gradient``. Traced, that registers a gradient
    function under a new name (``CustomGradient-<n>``) in TensorFlow's process-wide gradient
    registry, never removed (tensorflow/tensorflow#97697), and its closure holds the traced
    tensors: every training kept its whole train-step graph alive after the model was gone,
    about 10 MiB and 15,000 Python objects per full training here, which a standing Dask
    worker piled up day after day and every full garbage collection walked (README "Scaling
    out", bench/long_lived.py).

    TensorFlow looks a gradient function up only when it differentiates through the op it
    belongs to, and nothing differentiates through an optimizer's update: once the training
    ends, the entries registered while it ran are dropped. A process trains one model at a
    time here (one thread per Dask worker, one symbol at a time in a flow run); a neighbour
    thread tracing at the same moment would lose only its optimizer's entry, which nothing
    reads either. If TensorFlow renames its registry this does nothing, and
    tests/modelling/test_lstm.py fails while the graphs still stay.
    """
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    before = set(registry or ())
    try:
        yield
    finally:
        if isinstance(registry, dict):
            for name in list(registry):
                if name not in before and name.startswith(CUSTOM_GRADIENT_PREFIX):
                    registry.pop(name, None)


def predict(model: keras.Model, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Standardized predictions, shape (n,), from the model's current weights.

    A network that :func:`build` made runs as a NumPy forward pass (:func:`numpy_forward`):
    a Keras call runs the LSTM's time steps eagerly, op by op, about 10-17 ms a call however
    few the rows, and a symbol's day makes dozens of calls (the per-epoch price-MAPE hook,
    the evaluation, the champion gate, the plots, the recursive forecast; README "The model",
    bench/inference.py). Any other model goes through direct Keras calls.
    """
    if len(x) == 0:
        return np.empty(0, dtype=np.float32)
    forward = numpy_forward(model)
    if forward is None:
        parts = [
            keras.ops.convert_to_numpy(model(x[i : i + chunk], training=False))
            for i in range(0, len(x), chunk)
        ]
    else:
        parts = [forward(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate(parts).reshape(-1)


def numpy_forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray] | None:
    """The inference pass of a network :func:`build` made, in NumPy with the weights it has
    now (read once here: call again after training); None for any other model.

    Inference only: dropout is off, as in ``model(x, training=False)``. Keras's LSTM gates
    (kernel columns input, forget, cell, output; ``sigmoid`` recurrent activation, ``tanh``
    activation), the Dense head, and the average of an ensemble's heads; every layer's
    configuration is checked against these, so a model built otherwise falls back to Keras.
    """
    heads = _heads(model)
    if heads is None:
        return None
    weights = [
        ([[np.asarray(w, np.float32) for w in layer.get_weights()] for layer in stack],
         [np.asarray(w, np.float32) for w in dense.get_weights()])
        for stack, dense in heads
    ]  # fmt: skip
    steps = int(model.inputs[0].shape[1])
    flop_per_row = steps * sum(2 * (w.size + u.size) for stack, _ in weights for w, u, _ in stack)

    def forward(x: np.ndarray) -> np.ndarray:
        outputs = []
        small = len(x) * flop_per_row < ONE_BLAS_THREAD_BELOW_FLOP
        with _blas().limit(limits=1, user_api="blas") if small else contextlib.nullcontext():
            for stack, (kernel, bias) in weights:
                h = np.asarray(x, np.float32)
                for i, (w, u, b) in enumerate(stack):
                    h = _lstm_layer(h, w, u, b, sequences=i < len(stack) - 1)
                outputs.append(h @ kernel + bias)
        return np.mean(outputs, axis=0) if len(outputs) > 1 else outputs[0]

    return forward


@cache
def _blas() -> Any:
    """The process's BLAS pools. A NumPy pass under ``ONE_BLAS_THREAD_BELOW_FLOP`` runs on one
    thread: OpenBLAS's threads gain nothing on such small matrices and spin between calls
    (with two, a `default` next day took 50% more CPU for the same wall: README "The
    model"); a larger one (the `seed` network on a whole part) uses the pool: on one thread
    a call of 1,000 rows took 644 ms against Keras's 383 ms, with the pool 380 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _heads(model: keras.Model) -> list[tuple[list[Any], Any]] | None:
    """[(LSTM layers in order, Dense head)] per ensemble member, when ``model`` is laid out
    and configured exactly as :func:`build` makes it; else None."""
    layers = {layer.name: layer for layer in model.layers}
    prefixes = sorted({n[: -len("lstm_1")] for n in layers if n.endswith("lstm_1")})
    if not prefixes:
        return None
    heads, used = [], {"window"}
    for prefix in prefixes:
        stack = []
        while f"{prefix}lstm_{len(stack) + 1}" in layers:
            stack.append(layers[f"{prefix}lstm_{len(stack) + 1}"])
        dense = layers.get(f"{prefix}output" if len(prefixes) > 1 else "output")
        if not all(_is_plain_lstm(layer, i < len(stack) - 1) for i, layer in enumerate(stack)):
            return None
        if not isinstance(dense, keras.layers.Dense) or not _is_linear_dense(dense):
            return None
        heads.append((stack, dense))
        used |= {layer.name for layer in stack} | {dense.name}
    if len(prefixes) > 1:
        if not isinstance(layers.get("output"), keras.layers.Average):
            return None
        used.add("output")
    return heads if used == set(layers) else None


def _is_plain_lstm(layer: Any, sequences: bool) -> bool:
    if not isinstance(layer, keras.layers.LSTM):
        return False
    config = layer.get_config()
    return (
        config["activation"] == "tanh"
        and config["recurrent_activation"] == "sigmoid"
        and config["use_bias"]
        and config["return_sequences"] == sequences
        and not (config["return_state"] or config["go_backwards"] or config["stateful"])
    )


def _is_linear_dense(layer: Any) -> bool:
    config = layer.get_config()
    return config["activation"] == "linear" and config["use_bias"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without exp's overflow


def _lstm_layer(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray, sequences: bool
) -> np.ndarray:
    """One LSTM over (n, steps, features): the last hidden state (n, units), or every step's
    (n, steps, units) when ``sequences``."""
    n, steps, units = x.shape[0], x.shape[1], recurrent.shape[0]
    h = np.zeros((n, units), np.float32)
    c = np.zeros((n, units), np.float32)
    seen = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units : 2 * units])
        g, o = np.tanh(z[:, 2 * units : 3 * units]), _sigmoid(z[:, 3 * units :])
        c = f * c + i * g
        h = o * np.tanh(c)
        seen.append(h)
    return np.stack(seen, axis=1) if sequences else h


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
