"""Train, fine-tune and update LSTM models; the result is a serializable `TrainedModel`.

TensorFlow is imported on first use (models.lstm), so importing this module stays cheap.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import pandas as pd

from models.presets import ModelConfig
from tasks.bands import Bands, fine_tune_bands, train_bands
from tasks.evaluate import evaluate, mape
from tasks.forecast import Residuals, backtest_bands, band_residuals, calibrated
from tasks.prepare import Prepared, Samples, prepare, split_bounds, to_price
from tasks.timing import Stages
from tasks.trained import Kind, TrainedModel, prices_from, val_ratio_of

Policy = Literal["auto", "fine_tune", "retrain"]
# a fine-tune of at most this many batches per epoch runs them as direct eager steps: graph
# tracing (about a second) and fit()'s set-up would cost more than the steps themselves
EAGER_MAX_BATCHES = 8


def _evaluate_part(model: Any, samples: Samples, prepared: Prepared, config: ModelConfig):
    if len(samples) == 0:
        return None
    from models import lstm

    z = lstm.predict(model, samples.x)
    price = to_price(z, samples.base_close, prepared.scaler, config)
    return evaluate(samples.actual_close, price, samples.base_close, samples.y, z)


def _price_mape_hook(model: Any, prepared: Prepared, config: ModelConfig):
    """Adds price_mape (train) and val_price_mape to each epoch's logs."""

    def hook(epoch: int, logs: dict[str, Any]) -> None:
        for key, part in (("price_mape", prepared.train), ("val_price_mape", prepared.val)):
            if len(part):
                predicted = prices_from(model, part, prepared.scaler, config)
                logs[key] = mape(part.actual_close, predicted)

    return hook


def _data_range(frame: pd.DataFrame, prepared: Prepared) -> dict[str, Any]:
    def first(samples: Samples) -> str | None:
        return samples.target_time[0].isoformat() if len(samples) else None

    return {
        "first": frame.index[0].isoformat(),
        "last": frame.index[-1].isoformat(),
        "rows": len(frame),
        "val_start": first(prepared.val),
        "test_start": first(prepared.test),
        "samples": {
            "train": len(prepared.train),
            "val": len(prepared.val),
            "test": len(prepared.test),
        },
    }


def _fit(
    model: Any,
    prepared: Prepared,
    train: Samples,
    config: ModelConfig,
    epochs: int,
    patience: int | None,
    track_price_mape: bool,
    validate: bool = True,
    batch_size: int | None = None,
    seed: int | None = None,
    few_steps: bool = False,
) -> tuple[dict[str, list[float]], float]:
    """Fit and time, shuffling with ``seed`` (default ``config.seed``); ``validate=False``
    skips the per-epoch validation pass (a short fine-tune without early stopping needs none:
    the part is evaluated once afterwards); ``few_steps`` trains with `training.train_steps`."""
    from models import training

    hook = _price_mape_hook(model, prepared, config) if track_price_mape else None
    seed = config.seed if seed is None else seed
    started = time.perf_counter()
    if few_steps:
        history = training.train_steps(
            model,
            (train.x, train.y),
            epochs=epochs,
            batch_size=batch_size or config.batch_size,
            seed=seed,
            on_epoch_end=hook,
        )
        return history, time.perf_counter() - started
    history = training.fit(
        model,
        (train.x, train.y),
        (prepared.val.x, prepared.val.y) if validate else None,
        epochs=epochs,
        batch_size=batch_size or config.batch_size,
        patience=patience,
        on_epoch_end=hook,
        seed=seed,
    )
    return history, time.perf_counter() - started


def _result(
    model: Any,
    frame: pd.DataFrame,
    prepared: Prepared,
    config: ModelConfig,
    timeframe: str,
    fitted: tuple[dict[str, list[float]], float],
    previous: TrainedModel | None = None,
    bands: Bands | None = None,
    residuals: Residuals | None = None,
) -> TrainedModel:
    """Evaluate and package; `previous` is the model a fine-tune started from (None: retrain),
    `residuals` the bands' when already computed (`band_residuals`). The bands are scored
    only where there is a test part: a served twin's validation rows are in sample for its
    calibration, and after a fine-tune for its networks."""
    from models import lstm

    metrics = {
        "val": _evaluate_part(model, prepared.val, prepared, config),
        "test": _evaluate_part(model, prepared.test, prepared, config),
    }
    if bands is not None and config.test_fraction > 0:  # a served twin has no test part
        if residuals is None:
            residuals = band_residuals(model, prepared.scaler, config, bands, frame, timeframe)
        garch = timeframe if previous is None else None  # a new lineage's window
        for part, scores in _band_metrics(frame, config, bands, residuals, garch).items():
            if metrics[part] is not None:
                metrics[part]["bands"] = scores
    if previous is None:
        ratio = val_ratio_of(metrics)
        lineage = {"kind": "retrain", "fine_tunes_since_retrain": 0, "retrain_val_ratio": ratio}
    else:
        lineage = {
            "kind": "fine_tune",
            "fine_tunes_since_retrain": previous.fine_tunes_since_retrain + 1,
            "retrain_val_ratio": previous.retrain_val_ratio,
        }
    return TrainedModel(
        model_bytes=lstm.to_bytes(model),
        config=config,
        scaler=prepared.scaler,
        timeframe=timeframe,
        history=fitted[0],
        metrics=metrics,
        data_range=_data_range(frame, prepared),
        train_seconds=fitted[1] + (bands.train_seconds if bands is not None else 0.0),
        bands=bands,
        **lineage,
    ).loaded(model)


def _band_metrics(
    frame: pd.DataFrame,
    config: ModelConfig,
    bands: Bands,
    residuals: Residuals,
    garch_timeframe: str | None,
) -> dict[str, dict[str, Any]]:
    """The bands scored per horizon on the validation and test parts (`backtest_bands`),
    beside the naive band's, and on the test part GARCH(1,1)-t's given the series'
    `garch_timeframe`: the validation part is the one the bands were calibrated on, so only
    the test part compares out of sample.

    A retrain passes it, a fine-tune does not: a lineage's fine-tunes are scored on nearly
    its retrain's test window (the newest 20% of a few more candles), and GARCH-t's refits
    there would be paid on every daily run for a baseline that barely moves
    (docs/benchmarks.md)."""
    a, b = split_bounds(len(frame), config.val_fraction, config.test_fraction)
    closes = frame["close"].to_numpy(dtype=float)
    scores = backtest_bands(residuals, bands, closes, {"val": (a, b)}, a)
    test = {"test": (b, len(frame))}
    return scores | backtest_bands(residuals, bands, closes, test, a, garch_timeframe)


def train_model(
    frame: pd.DataFrame,
    config: ModelConfig,
    timeframe: str = "d",
    track_price_mape: bool = True,
    stages: Stages | None = None,
) -> TrainedModel:
    """Train from scratch: split, fit a new scaler on the training rows, build, fit, evaluate.

    Early stopping on validation loss (best weights restored) when `config.patience` is set.
    `track_price_mape` adds the per-epoch price-space MAPE to the history (one extra forward
    pass per epoch). `stages` gets the seconds of `prepare`, `train` and `evaluate` (with
    serialization). Raises models.training.TrainingDivergedError on a NaN/inf loss.
    """
    from models import lstm

    stages = stages or Stages()
    with stages("prepare"):
        prepared = prepare(frame, config, timeframe)
        if len(prepared.train) == 0:
            raise ValueError("no training windows: too few consecutive candles")
        model = lstm.build(config, prepared.train.x.shape[2])
    with stages("train"):
        fitted = _fit(
            model, prepared, prepared.train, config, config.epochs, config.patience,
            track_price_mape,
        )  # fmt: skip
        bands = residuals = None
        if config.band_horizon:
            bands = train_bands(frame, config, timeframe)
            residuals = band_residuals(model, prepared.scaler, config, bands, frame, timeframe)
            val = split_bounds(len(frame), config.val_fraction, config.test_fraction)
            bands = calibrated(bands, residuals, val)
    with stages("evaluate"):
        return _result(
            model, frame, prepared, config, timeframe, fitted, bands=bands, residuals=residuals
        )


def fine_tune(
    trained: TrainedModel,
    frame: pd.DataFrame,
    epochs: int | None = None,
    track_price_mape: bool = True,
    stages: Stages | None = None,
) -> TrainedModel:
    """Continue training `trained` on `frame` (incl. the newest candles), keeping its scaler.

    Trains `epochs` (default config.fine_tune_epochs) epochs, without early stopping, at
    config.fine_tune_learning_rate and config.fine_tune_batch_size on the newest
    config.fine_tune_rows windows before the test part (validation rows included), then
    evaluates like `train_model`, timing the same stages.
    """
    from models import lstm

    config, stages = trained.config, stages or Stages()
    with stages("prepare"):
        prepared = prepare(frame, config, trained.timeframe, scaler=trained.scaler)
        model = lstm.from_bytes(trained.model_bytes)
        # the newest windows before the test part, validation rows included: they hold the
        # newest candles (the validation MAPE of a fine-tuned model is therefore partly
        # in-sample)
        seen = prepare(frame, config.replace(val_fraction=0.0), trained.timeframe, trained.scaler)
        train = seen.train.tail(config.fine_tune_rows)
        batch = config.fine_tune_batch_size or config.batch_size
        few_steps = len(train) <= EAGER_MAX_BATCHES * batch
        lstm.compile_model(model, config, config.fine_tune_learning_rate, run_eagerly=few_steps)
    seed = config.seed + trained.fine_tunes_since_retrain + 1
    lstm.set_seed(seed)
    with stages("train"):
        fitted = _fit(
            model, prepared, train, config, epochs or config.fine_tune_epochs, None,
            track_price_mape, validate=False, batch_size=batch, seed=seed, few_steps=few_steps,
        )  # fmt: skip
        bands = trained.bands
        if bands is not None:
            bands = fine_tune_bands(bands, frame, config, trained.timeframe, epochs, seed)
    with stages("evaluate"):
        return _result(model, frame, prepared, config, trained.timeframe, fitted, trained, bands)


def refit(
    trained: TrainedModel,
    previous: TrainedModel | None,
    frame: pd.DataFrame,
    track_price_mape: bool = True,
) -> TrainedModel:
    """`trained` with its served twin: the same recipe on every candle, the one that forecasts.

    `trained`, the evaluation twin, holds the newest `test_fraction` of the candles out of
    its training so that the champion gate can score it there; its twin trains with
    ``test_fraction=0``, so the network that forecasts tomorrow has learnt up to today. The
    twin follows its evaluation twin: after a retrain it is refitted from scratch (its own
    scaler, its early stopping and band calibration on the newest `val_fraction`, which it
    does not train on); after a fine-tune it fine-tunes `previous`'s twin on the newest
    windows, today's included, or is refitted where `previous` has none.
    """
    twin = previous.served if previous is not None and trained.kind == "fine_tune" else None
    if twin is None:
        config = trained.config.replace(test_fraction=0.0)
        served = train_model(frame, config, trained.timeframe, track_price_mape)
    else:
        served = fine_tune(twin, frame, track_price_mape=track_price_mape)
    return trained.replace(served=served)


def decide(
    policy: Policy,
    has_model: bool,
    fine_tunes_since_retrain: int,
    val_ratio: float | None,
    retrain_val_ratio: float | None,
    retrain_every: int,
    tolerance: float,
    narrow: bool = False,
) -> Kind:
    """Fine-tune or retrain? Pure; `auto` fine-tunes unless a retrain is due.

    `auto` retrains when there is no model, after `retrain_every` fine-tunes since the last
    retrain, when the bands served since the last retrain have been too narrow (`narrow`,
    `tasks.intervals.too_narrow`), or when the current model's validation ratio (MAPE /
    persistence MAPE on the same rows, so calm and wild periods compare) exceeds the last
    retrain's by more than `tolerance` (relative): val_ratio > retrain_val_ratio * (1 + tolerance).
    """
    if policy == "retrain" or not has_model:
        return "retrain"
    if policy == "fine_tune":
        return "fine_tune"
    if fine_tunes_since_retrain >= retrain_every or narrow:
        return "retrain"
    if val_ratio is not None and retrain_val_ratio is not None:
        if val_ratio > retrain_val_ratio * (1 + tolerance):
            return "retrain"
    return "fine_tune"


def update_model(
    previous: TrainedModel | None,
    frame: pd.DataFrame,
    config: ModelConfig,
    policy: Policy = "auto",
    timeframe: str = "d",
    track_price_mape: bool = True,
    stages: Stages | None = None,
    narrow: bool = False,
) -> TrainedModel:
    """The daily step: fine-tune `previous` or retrain from scratch, as `decide` says.

    Under `auto`, a fine-tune whose validation ratio degrades beyond the tolerance is replaced
    at once by a retrain. `narrow`: the bands served since the last retrain have been too
    narrow. `stages` gets the seconds of every training this took.
    """
    has = previous is not None
    kind = decide(
        policy,
        has,
        previous.fine_tunes_since_retrain if has else 0,
        previous.val_ratio if has else None,
        previous.retrain_val_ratio if has else None,
        config.retrain_every,
        config.degrade_tolerance,
        narrow,
    )
    if kind == "retrain" or previous is None:
        return train_model(frame, config, timeframe, track_price_mape, stages)
    tuned = fine_tune(previous, frame, track_price_mape=track_price_mape, stages=stages)
    again = decide(
        policy,
        True,
        0,
        tuned.val_ratio,
        tuned.retrain_val_ratio,
        config.retrain_every,
        config.degrade_tolerance,
    )
    if again == "retrain":
        return train_model(frame, config, timeframe, track_price_mape, stages)
    return tuned


def warm_up(config: ModelConfig, days: int = 120) -> float:
    """Retrain and fine-tune a throwaway model of ``config``'s architecture (one epoch each)
    on a synthetic daily series; returns the seconds it took.

    A long-lived worker (a standing Dask cluster's, ``candlecast.dask_worker``) calls it once
    at start, so TensorFlow's first-call costs (runtime and kernel set-up) are paid there
    and not by the first symbol it trains. Nothing is stored.
    """
    began = time.perf_counter()
    close = 100.0 * np.exp(np.cumsum(0.01 * np.sin(np.arange(days) / 3.0)))
    index = pd.date_range("2020-01-01", periods=days, freq="D", tz="UTC", name="open_time")
    frame = pd.DataFrame(
        {
            "open": np.concatenate([close[:1], close[:-1]]),
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume_base": np.full(days, 10.0),
            "volume_quote": close * 10.0,
            "trade_count": pd.array(np.full(days, 100), dtype="Int64"),
        },
        index=index,
    )
    config = config.replace(epochs=1, patience=None, fine_tune_epochs=1)
    trained = train_model(frame, config)
    fine_tune(trained, frame)
    return time.perf_counter() - began
