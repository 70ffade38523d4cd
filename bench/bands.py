"""Forecast bands of the two baselines, walked forward over the last 20% of CDD daily files.

    .venv/bin/python -m bench.bands [CSV ...] [--refit-every 30] [--horizon 7]
        [--paths 10000] [--mean zero|constant]

The test part is the one `bench.forecast_quality` walks: the last round(20%) of the candles.
Each forecast origin t is a day whose close is known, from the day before the test part (so
the h=1 targets are exactly the test rows) to the day before the last; for h = 1..horizon it
forecasts the close h days later, where one exists. Two bands, scored on the same (t, h):

  naive  `tasks.intervals.naive_band`: persistence, log-normal with the spread of the last 365
         daily log returns up to t, scaled by sqrt(h);
  garch  GARCH(1,1) with Student-t innovations (`tasks.garch`) on 100 x daily log returns,
         with a zero mean by default (`--mean constant` fits the drift, -0.09 to +0.17% a
         day on the four files). Refitted every `--refit-every` days on every return before
         the refit day; between refits only the variance recursion takes in each new return.
         Beyond h=1 its quantiles are those of `--paths` simulated paths (seeded), or with
         `--paths 0` the Student-t scaled to the summed 1..h-day variance forecasts, an
         approximation whose 80% bands at h=7 cover 1.3-4.7 points less (docs/benchmarks.md).

Scores (tasks.intervals) in % of the realised close: coverage of the 80% and 95% bands, the
95% interval (Winkler) score, and the mean pinball loss over q = 0.05, ..., 0.95; and the
seconds each baseline's quantiles took over the file's test part.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import DAILY_FILES, load_daily
from candlecast.core.errors import CandlecastError
from tasks.garch import MEANS, PATHS, garch_quantiles
from tasks.intervals import (
    BAND_LEVELS,
    BANDS,
    PINBALL_LEVELS,
    coverage,
    naive_quantiles,
    pinball,
    winkler,
)
from tasks.prepare import split_bounds

TEST_FRACTION = 0.2
LOOKBACK = 365
METHODS = ("naive", "garch")


def origins(n_rows: int) -> np.ndarray:
    """Forecast origins: from the day before the test part to the day before the last."""
    return np.arange(split_bounds(n_rows, 0.0, TEST_FRACTION)[1] - 1, n_rows - 1)


def scores(
    closes: np.ndarray, starts: np.ndarray, quantiles: np.ndarray, h: int
) -> dict[str, float]:
    """Coverage at 80% and 95%, Winkler95 and mean pinball of the h-day bands, in %."""
    keep = starts + h < closes.size
    actual = closes[starts[keep] + h]
    q = {level: quantiles[keep, h - 1, j] for j, level in enumerate(BAND_LEVELS)}
    result = {f"cov{c}_h{h}": coverage(actual, q[lo], q[hi]) for c, (lo, hi) in BANDS.items()}
    lo, hi = BANDS[95]
    result[f"winkler95_h{h}"] = winkler(actual, q[lo], q[hi], alpha=0.05)
    result[f"pinball_h{h}"] = pinball(actual, {level: q[level] for level in PINBALL_LEVELS})
    result[f"n_h{h}"] = int(keep.sum())
    return result


def walk(
    frame: pd.DataFrame, horizon: int, refit_every: int, paths: int = PATHS, mean: str = "zero"
) -> dict[str, dict]:
    """{method: scores at every h = 1..horizon, and the seconds its quantiles took} for one
    file's final daily candles."""
    steps = frame.index.to_series().diff().dropna()
    if not (steps == pd.Timedelta(days=1)).all():
        raise ValueError("the walk counts h days as h rows: the daily candles must have no gap")
    closes, starts = frame["close"], origins(len(frame))
    build = {
        "naive": lambda: naive_quantiles(closes.to_numpy(), starts, horizon),
        "garch": lambda: garch_quantiles(closes, starts, horizon, refit_every, paths, mean),
    }
    results = {}
    for method, quantiles in build.items():
        began = time.perf_counter()
        q = quantiles()
        seconds = time.perf_counter() - began
        results[method] = {
            k: v for h in range(1, horizon + 1)
            for k, v in scores(closes.to_numpy(), starts, q, h).items()
        } | {"seconds": seconds}  # fmt: skip
    return results


def table(symbol: str, result: dict[str, dict], horizon: int) -> str:
    """One file's table: rows naive and garch, the h=1 and h=horizon coverage, h=1 scores."""
    columns = ["cov80_h1", "cov95_h1", f"cov80_h{horizon}", f"cov95_h{horizon}"]
    columns = list(dict.fromkeys([*columns, "winkler95_h1", "pinball_h1"]))
    frame = pd.DataFrame({m: {c: result[m][c] for c in columns} for m in METHODS}).T
    n = f"n: {result['naive']['n_h1']} at h=1, {result['naive'][f'n_h{horizon}']} at h={horizon}"
    took = ", ".join(f"{m} {result[m]['seconds']:.2f} s" for m in METHODS)
    body = frame.to_string(float_format="{:.3f}".format)
    return f"{symbol} ({n}; {took})\n{body}"


def result_line(results: dict[str, dict[str, dict]], horizon: int) -> str:
    keys = ["cov95_h1", "cov80_h1", "winkler95_h1", "pinball_h1"]
    keys += [k for k in (f"cov95_h{horizon}", f"cov80_h{horizon}") if k not in keys]
    keys += ["seconds"]
    return "RESULT " + " ".join(
        f"{symbol}_{method}_{key}={result[method][key]:.4f}"
        for symbol, result in results.items() for method in METHODS for key in keys
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DAILY_FILES)
    parser.add_argument("--refit-every", type=int, default=30, help="days between GARCH fits")
    parser.add_argument("--horizon", type=int, default=7, help="the longest horizon, in days")
    parser.add_argument(
        "--paths", type=int, default=PATHS,
        help="simulated paths for GARCH's h >= 2 quantiles (0: the scaled Student-t)",
    )  # fmt: skip
    parser.add_argument(
        "--mean", choices=list(MEANS), default="zero",
        help="GARCH's mean: zero (centred on persistence) or a fitted constant drift",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.refit_every < 1 or args.horizon < 1 or args.paths < 0:
        parser.error("--refit-every and --horizon must be >= 1, --paths >= 0")
    results = {}
    try:
        for path in args.files:
            symbol, frame = load_daily(path)
            results[symbol] = walk(frame, args.horizon, args.refit_every, args.paths, args.mean)
            print(table(symbol, results[symbol], args.horizon), end="\n\n", flush=True)
    except (OSError, ValueError, CandlecastError) as exc:  # expected: one line, no traceback
        parser.exit(2, f"bands: {exc}\n")
    print(result_line(results, args.horizon))


if __name__ == "__main__":
    main()
