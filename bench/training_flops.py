"""Training throughput of the `seed` preset in FLOP/s, next to a float32 matmul peak.

    .venv/bin/python -m bench.training_flops [CSV] [--epochs 3]

Each variant (XLA ``jit_compile``, batch size, TensorFlow thread pools) runs in a fresh
process, because TensorFlow's thread pools are fixed once it starts. In that process: the
numpy float32 2048x2048 matmul peak (best of 5, 2*n^3 FLOP each, measured before and after
the training; the better is the peak), then `seed` trained for ``--epochs`` epochs on one
CDD daily file (default BTCUSDT); seconds per epoch is the median of epochs 2.. (epoch 1 also
pays tracing/compilation).

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

VARIANTS = {
    "as shipped (batch 64)": {},
    "jit_compile": {"jit": True},
    "threads 2/1": {"intra": 2, "inter": 1},
    "threads 1/1": {"intra": 1, "inter": 1},
    "batch 256": {"batch": 256},
    "batch 256 + jit": {"batch": 256, "jit": True},
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


def run_variant(path: Path, epochs: int, jit: bool, batch: int | None) -> dict[str, float]:
    """In this process: the matmul peak, then `seed` training for `epochs` epochs."""
    from bench.data import load_daily
    from models import lstm
    from models.presets import preset
    from tasks.prepare import prepare

    peak = matmul_peak()
    config = preset("seed")
    config = config.replace(batch_size=batch) if batch else config
    _, frame = load_daily(path)
    prepared = prepare(frame, config)
    model = lstm.build(config, prepared.train.x.shape[2])
    model.jit_compile = jit
    stamps = [time.perf_counter()]
    lstm.fit(
        model, (prepared.train.x, prepared.train.y), (prepared.val.x, prepared.val.y),
        epochs=epochs, batch_size=config.batch_size,
        on_epoch_end=lambda epoch, logs: stamps.append(time.perf_counter()),
    )  # fmt: skip
    per_epoch = float(np.median(np.diff(stamps)[1:]))
    peak = max(peak, matmul_peak())  # a busy machine lowers one of them, rarely both
    forward = forward_flops(config.window, config.units, prepared.train.x.shape[2])
    flop = forward * (3 * len(prepared.train) + len(prepared.val))
    return {
        "peak": peak,
        "s_per_epoch": per_epoch,
        "flops": flop / per_epoch,
        "ratio": flop / per_epoch / peak,
        "train": len(prepared.train),
    }


def child(args: argparse.Namespace) -> None:
    if args.intra:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.intra)
    if args.inter:
        os.environ["TF_NUM_INTEROP_THREADS"] = str(args.inter)
    result = run_variant(args.file, args.epochs, args.jit, args.batch)
    print("JSON " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DAILY_FILES[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--intra", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--inter", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    rows = {}
    for name, variant in VARIANTS.items():
        command = [sys.executable, "-m", "bench.training_flops", str(args.file), "--child"]
        command += ["--epochs", str(args.epochs)]
        command += ["--jit"] if variant.get("jit") else []
        for key in ("batch", "intra", "inter"):
            command += [f"--{key}", str(variant[key])] if key in variant else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        line = next((x for x in done.stdout.splitlines() if x.startswith("JSON ")), None)
        if line is None:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        rows[name] = json.loads(line[5:])
        r = rows[name]
        print(
            f"{name:<24} {r['s_per_epoch']:7.2f} s/epoch {r['flops'] / 1e9:7.1f} GFLOP/s "
            f"matmul peak {r['peak'] / 1e9:6.1f} GFLOP/s  ratio {r['ratio']:.0%}",
            flush=True,
        )
    shipped = rows["as shipped (batch 64)"]
    same_recipe = {k: v for k, v in rows.items() if "batch" not in k or "64" in k}
    best_name = max(same_recipe, key=lambda k: same_recipe[k]["ratio"])
    best_any = max(rows, key=lambda k: rows[k]["ratio"])
    print(
        "RESULT "
        f"seed_gflops={shipped['flops'] / 1e9:.2f} matmul_peak_gflops={shipped['peak'] / 1e9:.2f} "
        f"seed_ratio={shipped['ratio']:.3f} "
        f"best_batch64_ratio={rows[best_name]['ratio']:.3f} "
        f"best_batch64='{best_name}' best_any_ratio={rows[best_any]['ratio']:.3f} "
        f"best_any='{best_any}'"
    )


if __name__ == "__main__":
    main()
