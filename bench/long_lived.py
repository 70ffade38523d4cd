"""A long-lived worker over many symbols: its memory and its seconds per symbol as it goes.

    .venv/bin/python -m bench.long_lived [--symbols 40] [--variants released,kept]

A standing Dask worker (docs/scaling.md) lives for days and runs every symbol it is sent,
each training a new model. This runs, in one fresh process set up as such a worker
(``candlecast.dask_worker.prepare_worker``, one TensorFlow thread), the daily step of
``--symbols`` symbols (the 4 real daily files, then copies under new names:
``bench.daily_run.bench_symbols``) as plain calls, no Prefect or Dask: first every symbol's
first day (a full training), then every symbol's next day (one new candle, a fine-tune),
on a fresh SQLite database, reading the process's resident memory after each step.

Variants, each in its own process: ``released`` as shipped, and ``kept`` with
``models.training.releasing_traced_gradients`` replaced by a no-op, as TensorFlow leaves things:
every traced train step then stays in its gradient registry (tensorflow/tensorflow#97697).
Printed per variant and day: resident MiB before, halfway and after, the MiB each symbol
added over the day's second half (what a leak keeps adding, past the first symbols' one-time
growth), and the seconds of the last 4 symbols over the first 4 (the same 4 files).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench.daily_run import PAIRS, bench_symbols, database, symbol_step, write_mirrors
from candlecast.dask_worker import prepare_worker

VARIANTS = ("released", "kept")
DAYS = ("first", "next")


def run_worker(variant: str, count: int) -> list[tuple[str, str, float, float]]:
    """In a fresh worker process: (day, symbol, seconds, resident MiB after) per step."""
    import psutil

    from models import training

    if variant == "kept":
        training.releasing_traced_gradients = contextlib.nullcontext
    process = psutil.Process()
    steps = [("start", "", 0.0, process.memory_info().rss / 2**20)]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        symbols = bench_symbols(count)
        folders = dict(zip(DAYS, write_mirrors(tmp, symbols), strict=True))
        with database("sqlite", tmp, "") as url:
            for day in DAYS:
                for symbol in symbols:
                    began = time.perf_counter()
                    symbol_step(symbol, url, str(folders[day]), str(tmp))
                    seconds = time.perf_counter() - began
                    steps.append((day, symbol, seconds, process.memory_info().rss / 2**20))
    return steps


def summarize(variant: str, steps: list[tuple[str, str, float, float]]) -> dict[str, float]:
    """Per day: resident MiB before, halfway and after; MiB a symbol over the day's second
    half (past any one-time growth of the first symbols: what a leak keeps adding); the last
    round's seconds over the first's."""
    fields: dict[str, float] = {}
    rss_before = steps[0][3]
    round_ = len(PAIRS)
    for day in DAYS:
        rows = [s for s in steps if s[0] == day]
        seconds = [s[2] for s in rows]
        half = len(rows) // 2
        rss_half, rss_after = rows[half - 1][3], rows[-1][3]
        per_symbol = (rss_after - rss_half) / (len(rows) - half)
        drift = sum(seconds[-round_:]) / sum(seconds[:round_])
        print(
            f"{variant:<9} {day:<6} {len(rows):>4} symbols: resident {rss_before:6.0f} -> "
            f"{rss_half:6.0f} -> {rss_after:6.0f} MiB, {per_symbol:+5.1f} MiB a symbol in the "
            f"second half; seconds a symbol {statistics.median(seconds):.2f} median, the last "
            f"{round_} over the first {round_}: {drift:.2f}x"
        )
        fields[f"{variant}_{day}_mib_per_symbol"] = per_symbol
        fields[f"{variant}_{day}_drift"] = drift
        rss_before = rss_after
    return fields


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=40, help="symbols a day, at least 8")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: any of {VARIANTS}")
    if args.symbols < 2 * len(PAIRS):
        parser.error(f"--symbols: at least {2 * len(PAIRS)} (a first and a last round)")
    fields: dict[str, float] = {}
    for variant in variants:  # a fresh worker process each: nothing carried over
        with ProcessPoolExecutor(1, get_context("spawn"), prepare_worker, (1,)) as pool:
            steps = pool.submit(run_worker, variant, args.symbols).result()
        fields |= summarize(variant, steps)
    print(f"RESULT symbols={args.symbols} " + " ".join(f"{k}={v:.2f}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
