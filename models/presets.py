"""Model presets: every knob of the LSTM, its data preparation and its training, as data.

`lecture` is the lecture's recipe exactly; `default` is the product's own, chosen by measurement
(see bench/RESULTS.md); `tiny` keeps the tests fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Target = Literal["level", "log_return"]
Clipping = Literal["value", "norm", "none"]
Loss = Literal["mse", "mae", "huber", "gaussian_nll"]

PRICE_COLUMNS = ("open", "high", "low", "close")
VOLUME_COLUMNS = ("volume_base", "volume_quote")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides how a model is built, fed, trained and fine-tuned.

    Attributes
    ----------
    features:
        Candle columns fed to the network, among `PRICE_COLUMNS` and `VOLUME_COLUMNS`.
        `close` must be one of them: it is also the target.
    target:
        `level` feeds and predicts standardized values; `log_return` feeds the standardized
        one-period log change of every feature and predicts the next close's log return.
    window:
        Number of consecutive candles in one input window.
    units:
        LSTM layer sizes, first to last; a Dense(1) head follows.
    dropout:
        Dropout rate inside every LSTM layer (inputs), 0 for none.
    shrink:
        Predicted log return multiplied by this factor before it becomes a price (1 = as
        predicted, 0 would be persistence); ignored for `level`.
    clipping, clip:
        Adam gradient clipping: `value` clips each gradient element to [-clip, clip]
        (Keras `clipvalue`), `norm` rescales each gradient to norm <= clip (`clipnorm`).
    patience:
        Early-stopping patience on validation loss (best weights restored); None = no early
        stopping, the last epoch's weights are kept.
    val_fraction, test_fraction:
        Chronological shares of the rows used for validation and for the test.
    ensemble:
        Number of networks trained with seeds seed, seed+1, ...; predictions are averaged.
    fine_tune_epochs, fine_tune_rows, fine_tune_learning_rate, fine_tune_batch_size:
        A fine-tune trains this many epochs on the newest `fine_tune_rows` training windows
        (None = all) at this learning rate and batch size (None = `batch_size`), keeping the
        scaler.
    retrain_every, degrade_tolerance:
        Policy `auto`: retrain from scratch every `retrain_every` fine-tunes, or when the
        fine-tuned validation MAPE exceeds the last retrain's by more than this relative amount.
    band_horizon, band_window, band_units, band_epochs:
        The band network (tasks/bands.py): an LSTM of `band_units` over the newest
        `band_window` candles' log return, its size and the high-low range, that forecasts the
        spread of the close's log change 1..`band_horizon` periods ahead; trained up to
        `band_epochs` epochs with the same early stopping, fine-tuned like the point network.
        0 = point forecasts only.
    unroll, jit_compile:
        How the same math runs, not what it is: `unroll` unrolls the LSTM over the window (no
        loop; worth it for short windows), `jit_compile` compiles the train step with XLA
        (None: Keras's "auto", off on a CPU-only machine). Chosen by bench/training_flops.py.
    """

    name: str
    features: tuple[str, ...] = ("close",)
    target: Target = "log_return"
    window: int = 7
    units: tuple[int, ...] = (32,)
    dropout: float = 0.0
    shrink: float = 1.0
    loss: Loss = "mse"
    epochs: int = 100
    learning_rate: float = 1e-3
    batch_size: int = 64
    clipping: Clipping = "none"
    clip: float = 0.0
    patience: int | None = 10
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 42
    ensemble: int = 1
    fine_tune_epochs: int = 2
    fine_tune_rows: int | None = None
    fine_tune_learning_rate: float = 1e-4
    fine_tune_batch_size: int | None = None
    retrain_every: int = 30
    degrade_tolerance: float = 0.1
    band_horizon: int = 0
    band_window: int = 30
    band_units: tuple[int, ...] = (16,)
    band_epochs: int = 200
    unroll: bool = False
    jit_compile: bool | None = None
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        known = set(PRICE_COLUMNS) | set(VOLUME_COLUMNS)
        unknown = set(self.features) - known
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(known)}")
        if "close" not in self.features:
            raise ValueError("features must include 'close' (the target)")
        if self.window < 1 or not self.units or self.ensemble < 1:
            raise ValueError("window, units and ensemble must be non-empty and positive")
        if self.band_horizon < 0 or self.band_window < 1 or not self.band_units:
            raise ValueError("band_horizon must be >= 0, band_window >= 1, band_units non-empty")
        if self.clipping != "none" and self.clip <= 0:
            raise ValueError("clipping needs clip > 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        values = dict(data)
        for key in ("features", "units", "band_units"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some knobs changed."""
        return dataclasses.replace(self, **changes)


# The lecture says "gradient clipping at 4" without naming the kind. It is read here as Keras
# `clipvalue=4` (each gradient element clipped to [-4, 4]), the older and more common meaning of
# a bare clipping number in Keras tutorials; `clipnorm=4` is the other reading, one knob away
# (`clipping="norm"`).
PRESETS: dict[str, ModelConfig] = {
    "lecture": ModelConfig(
        name="lecture",
        features=("close",),
        target="level",
        window=7,
        units=(256, 512, 512),
        dropout=0.0,
        loss="mse",
        epochs=500,
        learning_rate=5e-5,
        batch_size=64,
        clipping="value",
        clip=4.0,
        patience=None,
        unroll=True,  # the same network and math, executed faster: bench/training_flops.py
        jit_compile=True,
        notes="the lecture's recipe: standardized close level, 7-day window, LSTM 256/512/512",
    ),
    "default": ModelConfig(
        name="default",
        features=("close",),
        target="log_return",
        window=7,
        units=(32,),
        shrink=0.5,
        loss="mae",
        epochs=100,
        learning_rate=1e-3,
        batch_size=64,
        clipping="norm",
        clip=1.0,
        patience=10,
        fine_tune_epochs=2,
        fine_tune_rows=256,
        fine_tune_learning_rate=1e-4,
        fine_tune_batch_size=256,  # one step per epoch: a fine-tune is mostly fixed cost
        band_horizon=7,
        band_window=30,
        band_units=(16,),
        unroll=True,  # no XLA: its compile time exceeds a whole default training
        notes=(
            "standardized daily close log returns, 7-day window, LSTM 32, MAE loss (the median"
            " move, like MAPE), predicted return halved; chosen in bench/RESULTS.md"
        ),
    ),
    "tiny": ModelConfig(
        name="tiny",
        features=("close",),
        target="log_return",
        window=3,
        units=(4,),
        epochs=2,
        batch_size=16,
        patience=None,
        fine_tune_epochs=1,
        band_horizon=3,
        band_window=4,
        band_units=(4,),
        band_epochs=2,
        notes="for tests only",
    ),
}


def preset(name: str) -> ModelConfig:
    """The preset called `name`; KeyError lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
