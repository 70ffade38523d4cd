"""A trained model with everything needed to use, judge and reproduce it, and its predictions
in price units. TensorFlow is imported on first use, so importing this module stays cheap."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from models.network import Network
from models.presets import ModelConfig
from tasks.bands import Bands
from tasks.prepare import Samples, ScalerParams, to_price

Kind = Literal["retrain", "fine_tune"]


@dataclass(frozen=True)
class TrainedModel(Network):
    """A trained network with everything needed to use, judge and reproduce it; its Keras
    model loads once, on first use (`models.network.Network`).

    model_bytes: the Keras `.keras` file; scaler, config, timeframe: how inputs were made;
    history: per-epoch loss/val_loss/price_mape/val_price_mape; metrics: {"val": ..., "test":
    ...} from `tasks.evaluate.evaluate` (None for an empty part); data_range: first/last
    candle and split boundaries (ISO UTC); kind: retrain or fine_tune; fine_tunes_since_retrain
    and retrain_val_ratio: the `auto` policy's memory; bands: the band network (None: point
    forecasts only); served: the twin refitted on every candle, which forecasts once the
    gate has passed (None: a twin itself, a version that never served, or one from before
    twins: such a model forecasts itself).
    """

    model_bytes: bytes = field(repr=False)
    config: ModelConfig
    scaler: ScalerParams
    timeframe: str
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    data_range: dict[str, Any]
    kind: Kind = "retrain"
    train_seconds: float = 0.0
    fine_tunes_since_retrain: int = 0
    retrain_val_ratio: float | None = None
    bands: Bands | None = None
    served: TrainedModel | None = None

    @property
    def serving(self) -> TrainedModel:
        """The model that forecasts: the served twin where there is one."""
        return self.served or self

    def metadata(self) -> dict[str, Any]:
        """Everything but the model bytes, JSON-able (stored beside the `.keras` file)."""
        return {
            "config": self.config.to_dict(),
            "scaler": self.scaler.to_dict(),
            "timeframe": self.timeframe,
            "history": self.history,
            "metrics": self.metrics,
            "data_range": self.data_range,
            "kind": self.kind,
            "train_seconds": self.train_seconds,
            "fine_tunes_since_retrain": self.fine_tunes_since_retrain,
            "retrain_val_ratio": self.retrain_val_ratio,
            "bands": None if self.bands is None else self.bands.metadata(),
            "served": None if self.served is None else self.served.metadata(),
        }

    def metadata_json(self) -> str:
        return json.dumps(self.metadata(), sort_keys=True)

    @property
    def band_bytes(self) -> bytes | None:
        return None if self.bands is None else self.bands.model_bytes

    @property
    def served_bytes(self) -> tuple[bytes, bytes | None] | None:
        """The served twin's (point network, band network) bytes; None without one."""
        twin = self.served
        return None if twin is None else (twin.model_bytes, twin.band_bytes)

    @classmethod
    def from_parts(
        cls,
        model_bytes: bytes,
        metadata: dict[str, Any] | str,
        band_bytes: bytes | None = None,
        served_bytes: tuple[bytes, bytes | None] | None = None,
    ) -> TrainedModel:
        """Inverse of (`model_bytes`, `metadata()`/`metadata_json()`, `band_bytes`,
        `served_bytes`)."""
        meta = json.loads(metadata) if isinstance(metadata, str) else dict(metadata)
        served = meta.pop("served", None)
        if served is not None and served_bytes is None:
            raise ValueError("the metadata describes a served twin whose bytes are missing")
        if served is not None:
            twin, twin_bands = served_bytes
            meta["served"] = cls.from_parts(twin, served, twin_bands)
        meta["config"] = ModelConfig.from_dict(meta["config"])
        meta["scaler"] = ScalerParams.from_dict(meta["scaler"])
        bands = meta.pop("bands", None)
        if bands is not None and band_bytes is None:
            raise ValueError("the metadata describes a band network whose bytes are missing")
        meta["bands"] = None if bands is None else Bands.from_parts(band_bytes, bands)
        return cls(model_bytes=model_bytes, **meta)

    @property
    def val_ratio(self) -> float | None:
        """Validation MAPE / persistence MAPE on the same rows (1 - skill); None without val."""
        return val_ratio_of(self.metrics)


def val_ratio_of(metrics: dict[str, Any]) -> float | None:
    val = metrics.get("val")
    return None if val is None else val["mape"] / val["persistence_mape"]


def predict_prices(trained: TrainedModel, samples: Samples) -> np.ndarray:
    """The model's predicted closes (price units) for prepared samples."""
    return prices_from(trained.keras_model, samples, trained.scaler, trained.config)


def prices_from(model: Any, samples: Samples, scaler: ScalerParams, config: ModelConfig):
    from models import lstm

    return to_price(lstm.predict(model, samples.x), samples.base_close, scaler, config)
