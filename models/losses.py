"""Losses that Keras does not ship, registered so that a saved model loads in safe mode."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="candlecast")
def gaussian_nll(y_true: Any, log_sigma: Any) -> Any:
    """Negative log-likelihood of zero-mean Gaussians, one per output column, without its
    constant: mean over the defined targets of log(sigma) + y^2 / (2 sigma^2).

    The network predicts log(sigma) for each column (a horizon); a NaN target (a horizon past
    the data the sample may see) is left out of the mean.
    """
    known = keras.ops.logical_not(keras.ops.isnan(y_true))
    y = keras.ops.where(known, y_true, 0.0)
    terms = log_sigma + 0.5 * keras.ops.square(y) * keras.ops.exp(-2.0 * log_sigma)
    count = keras.ops.maximum(keras.ops.sum(keras.ops.cast(known, terms.dtype)), 1.0)
    return keras.ops.sum(keras.ops.where(known, terms, 0.0)) / count
