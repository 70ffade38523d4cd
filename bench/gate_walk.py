"""The champion gate's coverage test: the static test window against the served path walked.

    .venv/bin/python -m bench.gate_walk [CSV|COIN ...] [--every 7] [--preset default]

For each CDD daily file, trains one version's evaluation twin on all its candles (the newest
20% held out, as the daily flow's first day does), then scores its h=1 bands on the test
window two ways: static (the twin's own test metrics, what the gate tested before) and walked
along the served path (`tasks.walk.served_walk`, fine-tuned every `--every` days, what the
gate tests now), each with the gate's binomial verdict (`tasks.registry.miscalibrated`).
Seconds are wall-clock: the evaluation twin's training, and the walk (`tasks.registry.
walk_scores`, which the gate runs on a new lineage that passes its other tests).

A COIN (`ADA`, or the pair `ADAUSDT`) names a shared daily file; the default is all four.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from bench.data import DAILY_FILES, daily_file, load_daily
from models.presets import preset
from tasks.registry import WindowScore, miscalibrated, walk_scores
from tasks.train import train_model
from tasks.walk import WALK_EVERY


def compare(frame: pd.DataFrame, name: str, every: int) -> dict[str, object]:
    """One file's static and walked h=1 scores, their verdicts and their seconds."""
    began = time.perf_counter()
    trained = train_model(frame, preset(name), track_price_mape=False)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    walk = walk_scores(trained, frame, every)
    walk_s = time.perf_counter() - began
    row: dict[str, object] = {"n": trained.metrics["test"]["n"]}
    for side, metrics in (("static", trained.metrics["test"]), ("walked", walk)):
        score = WindowScore.of(metrics)
        row |= {
            f"{side}_mape": score.mape,
            f"{side}_cov80": score.cov80,
            f"{side}_cov95": score.cov95,
            f"{side}_winkler95": score.winkler95,
            f"{side}_passes": miscalibrated(score) is None,
        }
    row["persistence_mape"] = walk["persistence_mape"]
    return row | {"fine_tunes": walk["fine_tunes"], "train_s": train_s, "walk_s": walk_s}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=daily_file, default=DAILY_FILES)
    parser.add_argument("--every", type=int, default=WALK_EVERY, help="days between fine-tunes")
    parser.add_argument("--preset", default="default")
    args = parser.parse_args(argv)
    rows = []
    for path in args.files:
        symbol, frame = load_daily(path)
        rows.append({"symbol": symbol} | compare(frame, args.preset, args.every))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="{:.3f}".format))
    table = pd.DataFrame(rows)
    print(f"\n{args.preset}, walked with a fine-tune every {args.every} days")
    print(table.to_string(index=False, float_format="{:.3f}".format))
    items = []
    for r in rows:
        for side in ("static", "walked"):
            items.append(f"{r['symbol']}_{side}_cov80_h1={r[f'{side}_cov80']:.2f}")
        items.append(f"{r['symbol']}_walk_over_train={r['walk_s'] / r['train_s']:.2f}")
    print(f"RESULT {' '.join(items)}")


if __name__ == "__main__":
    main()
