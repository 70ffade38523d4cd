"""A workaround for a TensorFlow leak: the gradient functions a training registers, dropped.

Keras's train step (TensorFlow backend) sums the gradients through the distribution
strategy's ``all_reduce``, a ``tf.custom_gradient``. Traced, that registers a gradient function
under a new name (``CustomGradient-<n>``) in TensorFlow's process-wide gradient registry and
never removes it (tensorflow/tensorflow#97697); its closure holds the traced tensors, so every
training kept its whole train-step graph alive after the model was gone, which a standing Dask
worker piled up day after day (docs/scaling.md, bench/long_lived.py).

The registry is private (``tensorflow.python.framework.ops._gradient_registry``). This is
tested on the TensorFlow versions in :data:`TESTED_TENSORFLOW`; on another, it warns once, and
where the registry is not what it expects it raises instead of leaking quietly. Without the
workaround, restart long-lived workers now and then instead (``dask worker --lifetime 24h
--lifetime-restart``; docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from functools import cache
from typing import Any

TESTED_TENSORFLOW = ("2.21",)  # major.minor versions the registry's layout was checked on
CUSTOM_GRADIENT_PREFIX = "CustomGradient-"  # how tf.custom_gradient names what it registers


class GradientRegistryChanged(RuntimeError):
    """TensorFlow's private gradient registry is not laid out as this workaround expects."""


@cache
def _registry() -> dict[str, Any]:
    """TensorFlow's gradient registry, checked once per process."""
    import tensorflow as tf
    from tensorflow.python.framework import ops

    version = ".".join(tf.__version__.split(".")[:2])
    if version not in TESTED_TENSORFLOW:
        logging.getLogger("candlecast").warning(
            "models.tf_gradients is tested on TensorFlow %s, this is %s",
            ", ".join(TESTED_TENSORFLOW),
            tf.__version__,
        )
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        raise GradientRegistryChanged(
            f"TensorFlow {tf.__version__} has no ops._gradient_registry._registry dict: update "
            "models/tf_gradients.py, or restart long-lived workers (dask worker --lifetime)"
        )
    return registry


@contextlib.contextmanager
def releasing_traced_gradients() -> Iterator[None]:
    """Around a training: drop the gradient functions TensorFlow registered while it ran.

    TensorFlow looks a gradient function up only when it differentiates through the op it
    belongs to, and nothing differentiates through an optimizer's update: once the training
    ends, the entries registered while it ran are dropped. A process trains one model at a
    time here (one thread per Dask worker, one symbol at a time in a flow run); a neighbour
    thread tracing at the same moment would lose only its optimizer's entry, which nothing
    reads either.
    """
    registry = _registry()
    before = set(registry)
    try:
        yield
    finally:
        for name in list(registry):
            if name not in before and name.startswith(CUSTOM_GRADIENT_PREFIX):
                registry.pop(name, None)
