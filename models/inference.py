"""The inference pass of a network that :func:`models.lstm.build` made, in NumPy: a Keras
call runs the LSTM's time steps op by op at a fixed cost, which dozens of small predictions
a day pay over and over (docs/model.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from typing import Any

import keras
import numpy as np

ONE_BLAS_THREAD_BELOW_FLOP = 1e8  # a NumPy forward pass this small runs on one BLAS thread


def numpy_forward(model: keras.Model) -> Callable[[np.ndarray], np.ndarray] | None:
    """The inference pass of a network :func:`models.lstm.build` made, in NumPy with the
    weights it has now (read once here: call again after training); None for any other model.

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
    thread: OpenBLAS's threads gain nothing on such small matrices and spin between calls; a
    larger one (the `lecture` network on a whole part) is faster with the pool (docs/model.md)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _heads(model: keras.Model) -> list[tuple[list[Any], Any]] | None:
    """[(LSTM layers in order, Dense head)] per ensemble member, when ``model`` is laid out
    and configured exactly as :func:`models.lstm.build` makes it; else None."""
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
