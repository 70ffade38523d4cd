"""Inference: the NumPy forward pass that `models.lstm.predict` runs, against Keras calls.

    .venv/bin/python -m bench.inference [--rounds 3]

Each measurement runs both ways in the same run, interleaved round by round: ``numpy`` as
shipped, ``keras`` with `models.inference.numpy_forward` switched off (direct Keras calls, as
`predict` made before):

1. one `predict` call of 1 row (a forecast step) and of 1,000 rows (a part's evaluation), on
   a `default` and a `lecture` network: milliseconds per call, median of 20;
2. a `default` training of BTC with early stopping, the per-epoch price-MAPE hook included
   (two `predict` calls an epoch): seconds;
3. the 4 symbols' next day (one new candle, fine-tune) as plain function calls, no Prefect:
   `forecast_symbol.fn` one symbol after another, each time on a fresh copy of the same
   first-day SQLite database; seconds per stage, summed over the symbols, and the CPU
   seconds the process used (all threads: TensorFlow's, BLAS's).

Predictions are the same either way (tests/modelling/test_lstm.py compares them).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.daily_run import SYMBOLS, database, write_mirrors
from bench.data import DAILY_FILES, load_daily
from models import inference, lstm
from models.presets import preset

WAYS = ("numpy", "keras")
STAGES = ("train", "evaluate", "register", "forecast", "plots", "task")


@contextlib.contextmanager
def way(name: str) -> Iterator[None]:
    """``keras``: `predict` finds no NumPy pass for any model, so it calls Keras."""
    shipped = inference.numpy_forward
    if name == "keras":
        inference.numpy_forward = lambda model: None
    try:
        yield
    finally:
        inference.numpy_forward = shipped


def per_call_ms(model, rows: int, calls: int = 20) -> float:
    x = np.random.default_rng(0).normal(size=(rows, 7, 1)).astype(np.float32)
    lstm.predict(model, x)
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        lstm.predict(model, x)
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def training_seconds(frame) -> tuple[float, int]:
    from tasks.train import train_model

    began = time.perf_counter()
    trained = train_model(frame, preset("default"))
    return time.perf_counter() - began, len(trained.history["loss"])


def next_day(base: Path, tmp: Path, day2: Path) -> dict[str, float]:
    """The 4 symbols' next day on a fresh copy of the first-day database; stage seconds."""
    from candlecast.core.settings import Settings
    from tasks.daily import forecast_symbol

    copy = tmp / f"copy-{time.monotonic_ns()}.sqlite"
    with sqlite3.connect(base) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # with what is still in the write-ahead log
    settings = Settings(database_url=f"sqlite:///{copy}", cdd_base_url=str(day2), data_dir=tmp)
    began, cpu = time.perf_counter(), cpu_seconds()
    timings = [forecast_symbol.fn(s, settings=settings).timings for s in SYMBOLS]
    sums = {stage: sum(t.get(stage, 0.0) for t in timings) for stage in STAGES}
    return sums | {"wall": time.perf_counter() - began, "cpu": cpu_seconds() - cpu}


def cpu_seconds() -> float:
    """This process's CPU seconds so far (all its threads: TensorFlow's, BLAS's)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from candlecast.core.settings import Settings
    from tasks.daily import forecast_symbol

    networks = {name: lstm.build(preset(name), n_features=1) for name in ("default", "lecture")}
    _, btc = load_daily(DAILY_FILES[0])
    calls: dict[str, list[float]] = {}
    trainings: dict[str, list[float]] = {w: [] for w in WAYS}
    days: dict[str, list[dict[str, float]]] = {w: [] for w in WAYS}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        day1, day2 = write_mirrors(tmp)
        with database("sqlite", tmp, "") as url:  # the first day, trained once
            settings = Settings(database_url=url, cdd_base_url=str(day1), data_dir=tmp)
            for symbol in SYMBOLS:
                forecast_symbol.fn(symbol, settings=settings)
            base = Path(url.removeprefix("sqlite:///"))
            for round_ in range(1, args.rounds + 1):
                for name in WAYS if round_ % 2 else WAYS[::-1]:
                    with way(name):
                        for net, model in networks.items():
                            for rows in (1, 1000):
                                key = f"{name}_{net}_{rows}"
                                calls.setdefault(key, []).append(per_call_ms(model, rows))
                        seconds, epochs = training_seconds(btc)
                        trainings[name].append(seconds)
                        days[name].append(next_day(base, tmp, day2))
                    wall = days[name][-1]["wall"]
                    print(f"round {round_} {name}: default training {seconds:.2f} s "
                          f"({epochs} epochs), next day {wall:.2f} s")  # fmt: skip
    print("\nmilliseconds per predict call (median of 20 calls, then of rounds):")
    for net in networks:
        for rows in (1, 1000):
            ms = {w: statistics.median(calls[f"{w}_{net}_{rows}"]) for w in WAYS}
            print(f"  {net:<8} {rows:>5} rows: numpy {ms['numpy']:7.2f}  keras {ms['keras']:7.2f}"
                  f"  ({ms['keras'] / ms['numpy']:.1f}x)")  # fmt: skip
    train = {w: statistics.median(trainings[w]) for w in WAYS}
    print(f"default training of BTC (median of rounds): numpy {train['numpy']:.2f} s, "
          f"keras {train['keras']:.2f} s")  # fmt: skip
    print("4 symbols' next day without Prefect, seconds summed over symbols (median of rounds):")
    print(f"  {'':<6}" + "".join(f"{s:>9}" for s in (*STAGES, "wall", "cpu")))
    day = {w: {k: statistics.median(d[k] for d in days[w]) for k in days[w][0]} for w in WAYS}
    for w in WAYS:
        print(f"  {w:<6}" + "".join(f"{day[w][s]:9.2f}" for s in (*STAGES, "wall", "cpu")))
    ratios = [k["wall"] / n["wall"] for n, k in zip(days["numpy"], days["keras"], strict=True)]
    print(
        f"RESULT rounds={args.rounds} "
        f"predict_1row_ms={statistics.median(calls['numpy_default_1']):.2f} "
        f"predict_1row_keras_ms={statistics.median(calls['keras_default_1']):.2f} "
        f"training_s={train['numpy']:.2f} training_keras_s={train['keras']:.2f} "
        f"next_day_4sym_s={day['numpy']['wall']:.2f} "
        f"next_day_4sym_keras_s={day['keras']['wall']:.2f} "
        f"next_day_speedup={statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
