"""Training speed: seconds per epoch, and one daily fine-tune against one full retrain.

    .venv/bin/python -m bench.training_speed [CSV] [--seed-epochs 3]

On one CDD daily file (default BTCUSDT): "yesterday's" model is trained on all candles but the
newest; today's candle arrives; then (a) a fine-tune of yesterday's model and (b) a full
retrain from scratch on all candles, both timed wall-clock end to end (preparation, fit,
evaluation, serialization) and both scored on the same test part (last 20%). `seed` is trained
for `--seed-epochs` epochs only: its 500-epoch retrain time is extrapolated from the measured
seconds per epoch (said in the output).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.data import DAILY_FILES, load_daily
from models.presets import ModelConfig, preset
from tasks.train import TrainedModel, fine_tune, train_model


def _timed(call, *args, **kwargs) -> tuple[TrainedModel, float]:
    began = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - began


def seconds_per_epoch(frame, config: ModelConfig, epochs: int) -> float:
    """Median wall time of epochs 2.. (epoch 1 also pays graph tracing)."""
    from models import lstm

    stamps: list[float] = []
    from tasks.prepare import prepare

    prepared = prepare(frame, config)
    model = lstm.build(config, prepared.train.x.shape[2])
    stamps.append(time.perf_counter())
    lstm.fit(
        model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y),
        epochs=epochs, batch_size=config.batch_size,
        on_epoch_end=lambda epoch, logs: stamps.append(time.perf_counter()),
    )  # fmt: skip
    return float(np.median(np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)))


def compare(frame, config: ModelConfig) -> dict[str, float]:
    """Yesterday's model, then today's fine-tune and full retrain, timed and scored."""
    yesterday = train_model(frame.iloc[:-1], config, track_price_mape=False)
    tuned, tune_s = _timed(fine_tune, yesterday, frame, track_price_mape=False)
    retrained, retrain_s = _timed(train_model, frame, config, track_price_mape=False)
    return {
        "fine_tune_s": tune_s,
        "retrain_s": retrain_s,
        "retrain_epochs": len(retrained.history["loss"]),
        "fine_tune_mape": tuned.metrics["test"]["mape"],
        "retrain_mape": retrained.metrics["test"]["mape"],
        "persistence_mape": retrained.metrics["test"]["persistence_mape"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DAILY_FILES[0])
    parser.add_argument("--seed-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    symbol, frame = load_daily(args.file)
    default, seed = preset("default"), preset("seed")

    seed_epoch_s = seconds_per_epoch(frame, seed, args.seed_epochs)
    default_epoch_s = seconds_per_epoch(frame, default, 5)
    seed_retrain_s = seed_epoch_s * seed.epochs  # extrapolated: 500 epochs
    d = compare(frame, default)
    s = compare(frame, seed.replace(epochs=args.seed_epochs))

    print(f"{symbol}, {len(frame)} daily candles")
    print(f"seconds/epoch   seed {seed_epoch_s:.3f}   default {default_epoch_s:.3f}")
    print(
        f"default: fine-tune {d['fine_tune_s']:.2f} s vs full retrain {d['retrain_s']:.2f} s "
        f"({d['retrain_epochs']} epochs, early stopping): {d['retrain_s'] / d['fine_tune_s']:.1f}x;"
        f" test MAPE fine-tuned {d['fine_tune_mape']:.4f}% vs retrained {d['retrain_mape']:.4f}%"
        f" (persistence {d['persistence_mape']:.4f}%)"
    )
    print(
        f"seed: full retrain {seed_retrain_s:.0f} s (extrapolated: {seed.epochs} epochs x "
        f"{seed_epoch_s:.3f} s); default fine-tune is {seed_retrain_s / d['fine_tune_s']:.0f}x "
        f"faster; seed fine-tune {s['fine_tune_s']:.2f} s "
        f"({seed_retrain_s / s['fine_tune_s']:.0f}x faster than its own full retrain)"
    )
    print(
        "RESULT "
        f"seed_s_per_epoch={seed_epoch_s:.4f} default_s_per_epoch={default_epoch_s:.4f} "
        f"default_fine_tune_s={d['fine_tune_s']:.3f} default_retrain_s={d['retrain_s']:.3f} "
        f"default_retrain_over_fine_tune={d['retrain_s'] / d['fine_tune_s']:.2f} "
        f"seed_retrain_s_extrapolated={seed_retrain_s:.1f} "
        f"seed_retrain_over_default_fine_tune={seed_retrain_s / d['fine_tune_s']:.1f} "
        f"seed_fine_tune_s={s['fine_tune_s']:.3f} "
        f"default_fine_tune_mape={d['fine_tune_mape']:.4f} "
        f"default_retrain_mape={d['retrain_mape']:.4f}"
    )


if __name__ == "__main__":
    main()
