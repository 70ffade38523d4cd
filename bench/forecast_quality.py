"""Walk-forward forecast quality over the last 20% of CDD daily files, against persistence.

    .venv/bin/python -m bench.forecast_quality [CSV|COIN ...] [--presets default lecture]
        [--every 30] [--fine-tune-every 7] [--lecture-epochs 20] [--modes retrain auto]
        [--set KNOB=JSON ...]     # e.g. --set fine_tune_batch_size=64: a variant of the presets

For each file and preset, the test period (last 20% of the candles) is walked in blocks along
the path the daily flow serves: at the start of each block the evaluation twin is updated on
the candles before it and the served twin refitted on all of them (`tasks.train.refit`), which
then predicts every one-day-ahead close of the block (the inputs are real candles known the day
before, the weights stay fixed within the block). Modes:
  retrain  a full retrain every `--every` days (new scaler, early stopping on the newest 10%);
  auto     one retrain, then a fine-tune every `--fine-tune-every` days under policy `auto`
           (a retrain when due, when the evaluation twin's validation ratio degrades, or when
           the walked h=1 bands since the last retrain were too narrow, as the flow tests its
           served ones: the `narrow` column counts those).
`lecture` is too slow to walk forward: it is trained once at the start of the test period with
`--lecture-epochs` epochs (said in the table). Training seconds are wall-clock time of all fits.

A COIN (`ADA`, or the pair `ADAUSDT`) names a shared daily file; the default is all four.
`--until DAY` walks each file as if it ended that day: a test period nobody designed on, for a
hold-out (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data import DAILY_FILES, daily_file, load_daily
from candlecast.core.errors import CandlecastError
from models.presets import ModelConfig, preset
from tasks.garch import garch_quantiles
from tasks.intervals import naive_quantiles, scores_beside, served_coverage, too_narrow
from tasks.prepare import split_bounds
from tasks.train import refit, update_model
from tasks.walk import Walk, realised


def band_table(frame: pd.DataFrame, walk: Walk, refit_every: int) -> dict[str, dict]:
    """{band: band_scores} for the walk's bands, the naive band and GARCH(1,1)-t, on the same
    origins; each baseline's also holds the p-values of the walk's interval score and pinball
    loss against its own (`tasks.intervals.scores_beside`)."""
    closes, origins = frame["close"].to_numpy(), walk.band_origins()
    horizon = walk.quantiles[0].shape[1]
    actual = realised(closes, origins, horizon)
    baselines = {
        "naive": naive_quantiles(closes, origins, horizon),
        "garch": garch_quantiles(closes, origins, horizon, refit_every),
    }
    return scores_beside(actual, np.concatenate(walk.quantiles), baselines)


def walk_forward(frame: pd.DataFrame, config: ModelConfig, mode: str, every: int) -> Walk:
    """Walk the test period in `every`-day blocks along the path the daily flow serves: at
    the start of each block the evaluation twin is updated on the candles before it (under
    `mode`'s policy, its own newest 20% held out) and its served twin refitted or fine-tuned
    on all of them (`tasks.train.refit`), as for a series whose every version the gate
    promotes; the served twin predicts the block."""
    start = split_bounds(len(frame), config.val_fraction, config.test_fraction)[1]
    walk, trained, retrained = Walk(), None, start
    closes = frame["close"].to_numpy()
    for block in range(start, len(frame), every):
        policy = "retrain" if mode == "retrain" else "auto"
        # as the flow reads them before training: scored up to yesterday, since the retrain
        served = walk.served(closes, since=retrained - 1, until=block - 2)
        narrow = bool(served) and too_narrow(**served_coverage(served)) is not None
        began, candles = time.perf_counter(), frame.iloc[:block]
        evaluated = update_model(
            trained, candles, config, policy=policy, track_price_mape=False, narrow=narrow
        )
        trained = refit(evaluated, trained, candles, track_price_mape=False)
        walk.seconds += time.perf_counter() - began
        walk.retrains += trained.kind == "retrain"
        walk.fine_tunes += trained.kind == "fine_tune"
        retrained = block if trained.kind == "retrain" else retrained
        walk.narrow += narrow
        walk.add(trained.serving, frame, block, min(block + every, len(frame)))
    return walk


def load_files(files: list[Path], until: date | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(symbol, final candles) of each file, the symbol read from the file's own symbol column,
    and only the candles of the days up to `until` when given; all are read before any
    training, so a file that is not one pair's CDD file fails at once.

    Raises
    ------
    ValueError or candlecast.core.errors.ParseError, naming the file or its pair.
    """
    series = [load_daily(path) for path in files]
    if until is None:
        return series
    end = pd.Timestamp(until + timedelta(days=1), tz="UTC")
    cut = [(symbol, frame.loc[frame.index < end]) for symbol, frame in series]
    for (symbol, frame), path in zip(cut, files, strict=True):
        if frame.empty:
            raise ValueError(f"{Path(path).name}: no {symbol} candle on or before {until}")
    return cut


def run(
    series: list[tuple[str, pd.DataFrame]], presets: list[str], every: int, ft_every: int,
    lecture_epochs: int, changes: dict[str, object] | None = None,
    modes: tuple[str, ...] = ("retrain", "auto"),
):  # fmt: skip
    rows = []
    for symbol, frame in series:
        for name in presets:
            config, mode, k = preset(name).replace(**(changes or {})), "auto", ft_every
            if name == "lecture":
                config, mode, k = config.replace(epochs=lecture_epochs), "retrain", len(frame)
            runs = [("retrain", every), (mode, k)] if name == "default" else [(mode, k)]
            runs = [(m, e) for m, e in runs if m in modes or name == "lecture"]
            for run_mode, run_every in runs:
                walk = walk_forward(frame, config, run_mode, run_every)
                rows.append(_row(symbol, name, config, run_mode, run_every, walk))
                print(_format([rows[-1]], header=len(rows) == 1), flush=True)
                if walk.quantiles:
                    rows[-1]["bands"] = band_table(frame, walk, every)
                    print(_band_format(rows[-1]), flush=True)
    return rows


BAND_KEYS = ("cov80", "cov95", "winkler95", "pinball")
TEST_KEYS = ("winkler95_p", "pinball_p")


def _band_format(row: dict[str, object]) -> str:
    """One walk's bands beside the baselines' at h = 1 and the longest horizon, in %; a
    baseline's p columns test the walk's scores against its own (Diebold-Mariano)."""
    table = {}
    for band, scores in row["bands"].items():
        last = len(scores["n"])
        for h in sorted({1, last}):
            keys = ("n", *BAND_KEYS, "below95", "above95", *TEST_KEYS)
            table[(band, h)] = {key: (scores.get(key) or [None] * h)[h - 1] for key in keys}
    frame = pd.DataFrame(table).T.rename_axis(["band", "h"])
    title = f"{row['symbol']} {row['preset']} {row['mode']}: bands, % of the realised close"
    return f"{title}\n{frame.to_string(float_format='{:.3f}'.format)}\n"


def _band_results(row: dict[str, object]) -> list[str]:
    """RESULT items of one walk's bands: {SYM}_{preset}_{metric}_h{h} for the served path
    (`auto`, else retrain: {SYM}_{preset}_retrain_...), {SYM}_naive_/_garch_ beside, and the
    p-values of the walk's scores against each: {SYM}_{preset}_{metric}_p_{baseline}_h{h}."""
    symbol, name = row["symbol"], str(row["preset"]).split()[0]
    prefix = {"model": f"{symbol}_{name}" + ("" if row["mode"] == "auto" else "_retrain")}
    prefix |= {band: f"{symbol}_{band}" for band in ("naive", "garch")}
    items = []
    for band, scores in row["bands"].items():
        for h in sorted({1, len(scores["n"])}):
            items += [f"{prefix[band]}_{key}_h{h}={scores[key][h - 1]:.4f}" for key in BAND_KEYS]
            items += [
                f"{prefix['model']}_{key}_{band}_h{h}={scores[key][h - 1]:.4f}"
                for key in TEST_KEYS
                if scores.get(key) and scores[key][h - 1] is not None
            ]
    return items


def _row(symbol, name, config, mode, every, walk: Walk) -> dict[str, object]:
    m = walk.metrics()
    label = f"{name} ({config.epochs} ep)" if name == "lecture" else name
    return {
        "symbol": symbol, "preset": label, "mode": mode, "every_days": every, "n": m["n"],
        "mape": m["mape"], "persistence_mape": m["persistence_mape"], "rel_mae": m["relative_mae"],
        "skill": m["skill"], "skill_p": m["skill_p_value"], "move_pct": m["move_pct_model"],
        "retrains": walk.retrains, "narrow": walk.narrow, "fine_tunes": walk.fine_tunes,
        "train_s": walk.seconds,
    }  # fmt: skip


def _format(rows: list[dict[str, object]], header: bool = True) -> str:
    table = pd.DataFrame(rows).to_string(index=False, header=header, float_format="{:.4f}".format)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=daily_file, default=DAILY_FILES)
    parser.add_argument("--presets", nargs="+", default=["default", "lecture"])
    parser.add_argument("--every", type=int, default=30, help="days between full retrains")
    parser.add_argument("--fine-tune-every", type=int, default=7, help="days between fine-tunes")
    parser.add_argument("--lecture-epochs", type=int, default=20)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KNOB=JSON",
        help="change a preset knob, e.g. --set fine_tune_batch_size=64 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--modes", nargs="+", default=["retrain", "auto"], choices=["retrain", "auto"],
        help="the `default` walks to run",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=date.fromisoformat, metavar="YYYY-MM-DD",
        help="walk each file as if it ended on this day (a hold-out period)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    changes = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.set)}
    try:
        series = load_files(args.files, args.until)
    except (OSError, ValueError, CandlecastError) as exc:  # expected: one line, no traceback
        parser.exit(2, f"forecast_quality: {exc}\n")
    rows = run(
        series, args.presets, args.every, args.fine_tune_every, args.lecture_epochs, changes,
        tuple(args.modes),
    )  # fmt: skip
    if changes:
        print(f"knobs changed: {changes}")
    if args.until:
        print(f"files cut after {args.until}")
    print()
    print(_format([{k: v for k, v in r.items() if k != "bands"} for r in rows]))
    items = [
        f"{r['symbol']}_{str(r['preset']).split()[0]}_{r['mode']}_skill={r['skill']:.4f}"
        for r in rows
    ]
    items += [item for r in rows if "bands" in r for item in _band_results(r)]
    print(f"RESULT {' '.join(dict.fromkeys(items))}")


if __name__ == "__main__":
    main()
