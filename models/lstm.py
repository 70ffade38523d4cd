"""The LSTM forecaster in Keras 3: build, predict, and to/from `.keras` bytes.

Knows nothing about candles or prices: it maps (n, window, n_features) float arrays to (n,)
standardized targets, or to (n, outputs) for a network with several outputs (the band
network's log-spread per horizon). Its training loops live in models/training.py, its NumPy
inference pass in models/inference.py; data preparation in tasks/prepare.py, training policy
in tasks/train.py.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from models import inference  # noqa: E402
from models.losses import gaussian_nll  # noqa: E402
from models.presets import ModelConfig  # noqa: E402

LOSSES = {"gaussian_nll": gaussian_nll}  # beside Keras's own names ("mse", "mae", "huber")


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
        loss=LOSSES.get(config.loss, config.loss),
        run_eagerly=run_eagerly,
        jit_compile="auto"
        if config.jit_compile is None
        else config.jit_compile and not run_eagerly,
    )
    return model


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the backend (initial weights, dropout, shuffling)."""
    keras.utils.set_random_seed(seed)


def build(
    config: ModelConfig, n_features: int, outputs: int = 1, output_bias: list[float] | None = None
) -> keras.Model:
    """Stacked LSTM(units...) -> Dense(outputs); `ensemble` such stacks averaged in one model.

    `output_bias` starts the head's biases there instead of at 0 (the band network starts at
    the spread a random walk would have).

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
            outputs,
            kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
            bias_initializer=keras.initializers.Constant(output_bias or 0.0),
            name=f"{prefix}output" if prefix else "output",
        )
        heads.append(output(h))
    outputs = heads[0] if len(heads) == 1 else keras.layers.Average(name="output")(heads)
    model = keras.Model(inputs, outputs, name=f"lstm_{config.name}")
    return compile_model(model, config)


def predict(model: keras.Model, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Standardized predictions, shape (n,) or (n, outputs), from the model's current weights.

    A network that :func:`build` made runs as a NumPy forward pass
    (:func:`models.inference.numpy_forward`): a Keras call runs the LSTM's time steps
    eagerly, op by op, at a fixed cost however few the rows, and a symbol's day makes dozens
    of calls (the per-epoch price-MAPE hook, the evaluation, the champion gate, the plots,
    the recursive forecast; docs/model.md). Any other model goes through direct Keras calls.
    """
    outputs = int(model.outputs[0].shape[-1])
    if len(x) == 0:
        return np.empty((0, outputs) if outputs > 1 else 0, dtype=np.float32)
    forward = inference.numpy_forward(model)
    if forward is None:
        parts = [
            keras.ops.convert_to_numpy(model(x[i : i + chunk], training=False))
            for i in range(0, len(x), chunk)
        ]
    else:
        parts = [forward(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    predicted = np.concatenate(parts)
    return predicted.reshape(-1) if outputs == 1 else predicted.reshape(-1, outputs)


def to_bytes(model: keras.Model) -> bytes:
    """The model (architecture, weights, optimizer state) in Keras 3's native `.keras` format."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


def from_bytes(data: bytes) -> keras.Model:
    """Load `.keras` bytes with safe_mode=True (no arbitrary code from the file), uncompiled.

    The file keeps the optimizer state, but nothing here trains on it: a fine-tune compiles
    a fresh optimizer (:func:`compile_model`) and a prediction needs none, so restoring it
    would be nearly half of each load, and a day loads several networks per symbol."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(data)
        return keras.saving.load_model(path, compile=False, safe_mode=True)
