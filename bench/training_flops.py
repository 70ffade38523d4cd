"""Training throughput of the `lecture` preset in FLOP/s, next to a float32 matmul peak.

    .venv/bin/python -m bench.training_flops [CSV] [--epochs 3] [--rounds 2]

Each variant (LSTM ``unroll``, XLA ``jit_compile``, batch size, TensorFlow thread pools) runs
in a fresh process, because TensorFlow's thread pools are fixed once it starts. In that
process: the numpy float32 2048x2048 matmul peak (best of 5, 2*n^3 FLOP each, measured before
and after the training), then `lecture` trained for ``--epochs`` epochs on one CDD daily file
(default BTCUSDT); seconds per epoch is the median of epochs 2.. (epoch 1 also pays
tracing/compilation). The variants run ``--rounds`` times, interleaved; each variant's
fastest round counts, against the best matmul peak of the whole run (the machine is shared:
a neighbour's burst slows one round, rarely all).

FLOP counted per sample, per LSTM layer and time step: 2 * 4u * (in + u) for the four gates'
input and recurrent matrix products (elementwise gate math, a few percent more, is not
counted); Dense(1): 2u. Training = 3x forward (backward is about twice the forward) on the
training windows, plus 1x forward on the validation windows that fit() evaluates each epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.data import DAILY_FILES

# name -> (ModelConfig overrides of `lecture`, TensorFlow thread pools); "as shipped" is the preset
VARIANTS: dict[str, tuple[dict, dict]] = {
    "as shipped": ({}, {}),
    "Keras defaults (loop, no XLA)": ({"unroll": False, "jit_compile": None}, {}),
    "unroll only": ({"unroll": True, "jit_compile": None}, {}),
    "jit_compile only": ({"unroll": False, "jit_compile": True}, {}),
    "as shipped, threads 1/1": ({}, {"intra": 1, "inter": 1}),
    "as shipped, batch 256": ({"batch_size": 256}, {}),
}


def forward_flops(window: int, units: tuple[int, ...], n_features: int) -> int:
    """FLOP of one sample's forward pass through the LSTM stack and its Dense(1) head."""
    total, inputs = 0, n_features
    for u in units:
        total += window * 2 * 4 * u * (inputs + u)
        inputs = u
    return total + 2 * units[-1]


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 n x n matmul rate of numpy, FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best


def seconds_per_epoch(frame, config, epochs: int) -> float:
    """Median wall time of epochs 2.. (epoch 1 also pays graph tracing)."""
    from models import lstm, training
    from tasks.prepare import prepare

    stamps: list[float] = []
    prepared = prepare(frame, config)
    model = lstm.build(config, prepared.train.x.shape[2])
    stamps.append(time.perf_counter())
    training.fit(
        model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y),
        epochs=epochs, batch_size=config.batch_size,
        on_epoch_end=lambda epoch, logs: stamps.append(time.perf_counter()),
    )  # fmt: skip
    return float(np.median(np.diff(stamps)[1:] if len(stamps) > 2 else np.diff(stamps)))


def throughput(frame, config, epochs: int) -> dict[str, float]:
    """In this process: the matmul peak, then ``config`` trained for ``epochs`` epochs on
    ``frame``, then the peak again (the better one counts: a busy machine lowers one, rarely
    both). Seconds per epoch, FLOP/s and their ratio to the peak."""
    from tasks.prepare import prepare

    peak = matmul_peak()
    per_epoch = seconds_per_epoch(frame, config, epochs)
    peak = max(peak, matmul_peak())
    prepared = prepare(frame, config)  # the sample counts the epochs ran on
    forward = forward_flops(config.window, config.units, prepared.train.x.shape[2])
    flop = forward * (3 * len(prepared.train) + len(prepared.val))
    return {
        "peak": peak,
        "s_per_epoch": per_epoch,
        "flops": flop / per_epoch,
        "ratio": flop / per_epoch / peak,
        "train": len(prepared.train),
    }


def run_variant(path: Path, epochs: int, overrides: dict) -> dict[str, float]:
    """`lecture` with ``overrides`` on the file at ``path``: :func:`throughput`."""
    from bench.data import load_daily
    from models.presets import preset

    _, frame = load_daily(path)
    return throughput(frame, preset("lecture").replace(**overrides), epochs)


def child(args: argparse.Namespace) -> None:
    if args.intra:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.intra)
    if args.inter:
        os.environ["TF_NUM_INTEROP_THREADS"] = str(args.inter)
    result = run_variant(args.file, args.epochs, json.loads(args.overrides))
    print("JSON " + json.dumps(result), flush=True)


def _run_child(path: Path, epochs: int, overrides: dict, threads: dict) -> dict | None:
    command = [sys.executable, "-m", "bench.training_flops", str(path), "--child"]
    command += ["--epochs", str(epochs), "--overrides", json.dumps(overrides)]
    for key, value in threads.items():
        command += [f"--{key}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    line = next((x for x in done.stdout.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        print(f"{overrides} {threads}: failed\n{done.stderr[-2000:]}")
        return None
    return json.loads(line[5:])


def _row(name: str, r: dict[str, float], peak: float) -> str:
    return (
        f"{name:<30} {r['s_per_epoch']:6.2f} s/epoch {r['flops'] / 1e9:7.1f} GFLOP/s  "
        f"matmul peak {peak / 1e9:6.1f} GFLOP/s  ratio {r['flops'] / peak:.0%}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DAILY_FILES[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, interleaved")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--intra", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--inter", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for round_ in range(1, args.rounds + 1):  # interleaved, so a noisy minute hits every variant
        for name, (overrides, threads) in VARIANTS.items():
            result = _run_child(args.file, args.epochs, overrides, threads)
            if result is None:
                continue
            runs[name].append(result)
            print(f"round {round_}: {_row(name, result, result['peak'])}", flush=True)
    # per variant its fastest round; one peak for all: the best matmul seen in the whole run
    peak = max(r["peak"] for results in runs.values() for r in results)
    rows = {
        name: {**best, "ratio": best["flops"] / peak}
        for name, results in runs.items()
        if results
        for best in [min(results, key=lambda r: r["s_per_epoch"])]
    }
    print(f"\nbest of {args.rounds} rounds per variant; peak = best matmul of the run")
    for name, r in rows.items():
        print(_row(name, r, peak))
    shipped, plain = rows["as shipped"], rows["Keras defaults (loop, no XLA)"]
    same_recipe = {k: v for k, v in rows.items() if "batch" not in k}
    best_name = max(same_recipe, key=lambda k: same_recipe[k]["ratio"])
    print(
        "RESULT "
        f"lecture_gflops={shipped['flops'] / 1e9:.2f} matmul_peak_gflops={peak / 1e9:.2f} "
        f"lecture_ratio={shipped['ratio']:.3f} keras_defaults_ratio={plain['ratio']:.3f} "
        f"shipped_speedup={plain['s_per_epoch'] / shipped['s_per_epoch']:.2f} "
        f"best_batch64_ratio={same_recipe[best_name]['ratio']:.3f} best_batch64='{best_name}'"
    )


if __name__ == "__main__":
    main()
