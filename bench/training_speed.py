"""Training speed: seconds per epoch, and one daily fine-tune against one full retrain.

    .venv/bin/python -m bench.training_speed [CSV] [--days 5] [--lecture-epochs 3]

On one CDD daily file (default BTCUSDT), for each of the last `--days` days: "yesterday's"
model is trained on the candles before that day; the day's candle arrives; then (a) a
fine-tune of yesterday's model and (b) a full retrain from scratch, both timed wall-clock end
to end (preparation, fit, evaluation, serialization) and both scored on the same test part
(that day's last 20%). Times are medians over the days and MAPEs means: one day's MAPE
difference between two near-identical models is noise of either sign. `lecture` is trained for
`--lecture-epochs` epochs only: its 500-epoch retrain time is extrapolated from the measured
seconds per epoch (said in the output), and its throughput is printed in FLOP/s next to the
float32 matmul peak measured in the same run (``bench.training_flops.throughput``;
``bench/training_flops.py`` compares the settings that change it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.data import DAILY_FILES, load_daily
from bench.training_flops import seconds_per_epoch, throughput
from models.presets import ModelConfig, preset
from tasks.train import fine_tune, train_model
from tasks.trained import TrainedModel


def _timed(call, *args, **kwargs) -> tuple[TrainedModel, float]:
    began = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - began


def compare(frame, config: ModelConfig, days: int = 1) -> dict[str, float]:
    """For each of the last `days` days: yesterday's model, then the day's fine-tune and full
    retrain, timed and scored; median seconds, mean test MAPEs, days the fine-tune is no worse.
    """
    rows = []
    for cut in range(len(frame) - days + 1, len(frame) + 1):
        today = frame.iloc[:cut]
        yesterday = train_model(today.iloc[:-1], config, track_price_mape=False)
        tuned, tune_s = _timed(fine_tune, yesterday, today, track_price_mape=False)
        retrained, retrain_s = _timed(train_model, today, config, track_price_mape=False)
        rows.append(
            (tune_s, retrain_s, len(retrained.history["loss"]), tuned.metrics["test"]["mape"],
             retrained.metrics["test"]["mape"], retrained.metrics["test"]["persistence_mape"])
        )  # fmt: skip
    tune_s, retrain_s, epochs, tuned_mape, retrained_mape, persistence = np.array(rows).T
    return {
        "fine_tune_s": float(np.median(tune_s)),
        "retrain_s": float(np.median(retrain_s)),
        "retrain_epochs": float(np.median(epochs)),
        "fine_tune_mape": float(tuned_mape.mean()),
        "retrain_mape": float(retrained_mape.mean()),
        "persistence_mape": float(persistence.mean()),
        "days_no_worse": int((tuned_mape <= retrained_mape).sum()),
        "days": days,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DAILY_FILES[0])
    parser.add_argument("--days", type=int, default=5, help="daily updates compared")
    parser.add_argument("--lecture-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    symbol, frame = load_daily(args.file)
    default, lecture = preset("default"), preset("lecture")

    lecture_run = throughput(frame, lecture, args.lecture_epochs)
    lecture_epoch_s = lecture_run["s_per_epoch"]
    default_epoch_s = seconds_per_epoch(frame, default, 5)
    lecture_retrain_s = lecture_epoch_s * lecture.epochs  # extrapolated: 500 epochs
    d = compare(frame, default, args.days)
    s = compare(frame, lecture.replace(epochs=args.lecture_epochs))

    print(f"{symbol}, {len(frame)} daily candles")
    print(f"seconds/epoch   lecture {lecture_epoch_s:.3f}   default {default_epoch_s:.3f}")
    print(
        f"lecture throughput {lecture_run['flops'] / 1e9:.1f} GFLOP/s: "
        f"{lecture_run['ratio']:.0%} of this run's float32 matmul peak "
        f"({lecture_run['peak'] / 1e9:.1f} GFLOP/s, numpy 2048x2048)"
    )
    print(
        f"default, median of {args.days} days: fine-tune {d['fine_tune_s']:.3f} s vs full retrain "
        f"{d['retrain_s']:.2f} s ({d['retrain_epochs']:.0f} epochs, early stopping): "
        f"{d['retrain_s'] / d['fine_tune_s']:.1f}x; mean test MAPE fine-tuned "
        f"{d['fine_tune_mape']:.4f}% vs retrained {d['retrain_mape']:.4f}% (persistence "
        f"{d['persistence_mape']:.4f}%); fine-tune no worse on {d['days_no_worse']} of "
        f"{args.days} days"
    )
    print(
        f"lecture: full retrain {lecture_retrain_s:.0f} s (extrapolated: {lecture.epochs} "
        f"epochs x {lecture_epoch_s:.3f} s); default fine-tune is "
        f"{lecture_retrain_s / d['fine_tune_s']:.0f}x faster; "
        f"lecture fine-tune {s['fine_tune_s']:.2f} s "
        f"({lecture_retrain_s / s['fine_tune_s']:.0f}x faster than its own full retrain)"
    )
    print(
        "RESULT "
        f"lecture_s_per_epoch={lecture_epoch_s:.4f} default_s_per_epoch={default_epoch_s:.4f} "
        f"lecture_gflops={lecture_run['flops'] / 1e9:.2f} "
        f"matmul_peak_gflops={lecture_run['peak'] / 1e9:.2f} "
        f"lecture_ratio={lecture_run['ratio']:.3f} "
        f"default_fine_tune_s={d['fine_tune_s']:.3f} default_retrain_s={d['retrain_s']:.3f} "
        f"default_retrain_over_fine_tune={d['retrain_s'] / d['fine_tune_s']:.2f} "
        f"lecture_retrain_s_extrapolated={lecture_retrain_s:.1f} "
        f"lecture_retrain_over_default_fine_tune={lecture_retrain_s / d['fine_tune_s']:.1f} "
        f"lecture_fine_tune_s={s['fine_tune_s']:.3f} "
        f"default_fine_tune_mape={d['fine_tune_mape']:.4f} "
        f"default_retrain_mape={d['retrain_mape']:.4f} "
        f"default_fine_tune_no_worse_days={d['days_no_worse']}/{args.days}"
    )


if __name__ == "__main__":
    main()
