"""The whole daily pipeline, timed: 1 and 4 symbols, SQLite and PostgreSQL, sequential and in
parallel, the first run (full training) and the next day's (one new candle).

    .venv/bin/python -m bench.daily_run [--databases sqlite,postgresql] [--preset default]

Parallel runs two ways, two workers each: ``processes`` (a process pool the flow run starts
and stops itself, so every run pays for spawning the workers and importing TensorFlow in
them) and ``dask-cluster`` (a standing local Dask cluster, as a deployment keeps one running
beside its Prefect server: started before the timed runs, its workers preloaded with
``candlecast.dask_worker``; its start-up is printed, not counted in the runs).

BTC, ETH, ADA and BNB daily files from shared/data/cryptodatadownload are served from a local
folder; on the first day each file lacks its newest final candle, which the next day's copy
adds (so day 2 ingests one candle per symbol and fine-tunes). Each case gets a fresh database
(a SQLite file; a scratch PostgreSQL database created and dropped) and runs the real
``flows.daily.daily_forecast`` flow under a temporary Prefect server. Stage seconds are
measured inside the task code (``SymbolOutcome.timings``) and summed over symbols; Prefect's
overhead is the flow's wall time less the in-task time (sequential: the sum; parallel: the sum
divided by the workers, so it also holds process start-up and imbalance).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.data import DAILY_FILES, load_daily
from bench.ingest import DEFAULT_POSTGRES, scratch_postgres

STAGES = [
    "fetch",
    "parse_validate",
    "upsert",
    "load",
    "train",
    "evaluate",
    "register",
    "forecast",
    "score",
    "plots",
]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT"]


def _seconds(line: str) -> float:
    unix = float(line.split(",", 1)[0])
    return unix / 1000.0 if unix >= 100_000_000_000 else unix


def write_mirrors(root: Path) -> tuple[Path, Path]:
    """(day 1, day 2) folders: day 2 holds the files as shipped, day 1 the same files without
    the newest final candle (and anything newer)."""
    day1, day2 = root / "day1", root / "day2"
    day1.mkdir()
    day2.mkdir()
    for path in DAILY_FILES:
        _, frame = load_daily(path)
        newest = frame.index[-1].timestamp()
        lines = path.read_text().splitlines()
        header = next(i for i, line in enumerate(lines) if line.lower().startswith("unix"))
        kept = lines[: header + 1] + [
            line for line in lines[header + 1 :] if line.strip() and _seconds(line) < newest
        ]
        (day1 / path.name).write_text("\n".join(kept) + "\n")
        (day2 / path.name).write_text(path.read_text())
    return day1, day2


@contextmanager
def database(kind: str, tmp: Path, admin_url: str) -> Iterator[str]:
    from db.migrate import upgrade
    from db.session import get_engine

    if kind == "sqlite":
        url = f"sqlite:///{tmp}/bench-{time.monotonic_ns()}.sqlite"
        upgrade(url)
        yield url
        get_engine(url).dispose()
    else:
        with scratch_postgres(admin_url) as url:
            upgrade(url)
            yield url


def settings_environment(url: str, mirror: Path, data_dir: Path) -> dict[str, str]:
    return {
        "CANDLECAST_DATABASE_URL": url,
        "CANDLECAST_CDD_BASE_URL": str(mirror),
        "CANDLECAST_DATA_DIR": str(data_dir),
    }


@contextmanager
def standing_cluster(environment: dict[str, str], workers: int = 2) -> Iterator[str]:
    """A local Dask cluster of ``workers`` single-threaded processes, preloaded like
    ``dask worker --preload candlecast.dask_worker``; yields the scheduler address."""
    from distributed import Client, LocalCluster

    began = time.perf_counter()
    with LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        preload=["candlecast.dask_worker"],
        env=environment,
    ) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(workers)
        print(f"dask cluster of {workers} workers up in {time.perf_counter() - began:.1f} s")
        yield cluster.scheduler_address


def run_day(
    url: str, mirror: Path, data_dir: Path, symbols: list[str], runner: str, preset: str,
    dask_address: str | None = None,
):  # fmt: skip
    """One flow run; (wall seconds, outcomes, workers)."""
    from candlecast.settings import get_settings
    from flows.daily import daily_forecast
    from tasks.parallel import resolve_runner

    os.environ.update(settings_environment(url, mirror, data_dir))
    os.environ.pop("CANDLECAST_DASK_ADDRESS", None)
    if dask_address:
        os.environ["CANDLECAST_DASK_ADDRESS"] = dask_address
    get_settings.cache_clear()
    kind = "dask" if dask_address else runner
    _, workers = resolve_runner(kind, len(symbols), 2 if dask_address else None, dask_address)
    began = time.perf_counter()
    state = daily_forecast(
        symbols=symbols, preset=preset, horizon=7, runner=kind, return_state=True
    )
    wall = time.perf_counter() - began
    outcomes = state.result(raise_on_failure=False)
    if not state.is_completed():
        raise RuntimeError(f"the daily run failed: {state.message}")
    return wall, outcomes, workers


def summarize(db: str, symbols: int, runner: str, day: str, wall: float, outcomes, workers):
    stages = {s: sum(o.timings.get(s, 0.0) for o in outcomes) for s in STAGES}
    in_task = sum(o.timings.get("task", 0.0) for o in outcomes)
    actions = sorted({o.action for o in outcomes})
    return {
        "db": db,
        "symbols": symbols,
        "runner": runner,
        "workers": workers,
        "day": day,
        "wall": wall,
        "in_task": in_task,
        "overhead": wall - in_task / workers,
        "actions": "+".join(actions),
        **stages,
    }


def print_table(rows: list[dict]) -> None:
    head = f"{'db':<10} {'sym':>3} {'runner':<12} {'day':<8} {'action':<10} {'wall':>7} "
    head += " ".join(f"{s[:8]:>8}" for s in STAGES) + f" {'in-task':>8} {'prefect+':>8}"
    print(head)
    for r in rows:
        line = (
            f"{r['db']:<10} {r['symbols']:>3} {r['runner']:<12} {r['day']:<8} "
            f"{r['actions']:<10} {r['wall']:7.1f} "
        )
        line += " ".join(f"{r[s]:8.2f}" for s in STAGES)
        print(line + f" {r['in_task']:8.1f} {r['overhead']:8.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of a server")
    parser.add_argument("--no-single", action="store_true", help="skip the 1-symbol cases")
    args = parser.parse_args(argv)
    from prefect.testing.utilities import prefect_test_harness

    from models import lstm  # noqa: F401 - TensorFlow imported before any timed run, as the
    # standing cluster's workers have it: the comparison is of the runs, not of imports

    cases = [] if args.no_single else [(SYMBOLS[:1], "sequential")]
    cases += [(SYMBOLS, "sequential"), (SYMBOLS, "processes"), (SYMBOLS, "dask-cluster")]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        day1, day2 = write_mirrors(Path(tmp))
        live = Path(tmp) / "live"  # the "CDD" every run reads: each day's files copied in
        for db in args.databases.split(","):
            for symbols, runner in cases:
                with contextlib.ExitStack() as stack:
                    url = stack.enter_context(database(db, Path(tmp), args.postgres))
                    address = None
                    if runner == "dask-cluster":
                        env = settings_environment(url, live, Path(tmp))
                        address = stack.enter_context(standing_cluster(env))
                    for day, files in (("first", day1), ("next", day2)):
                        shutil.copytree(files, live, dirs_exist_ok=True)
                        wall, outcomes, workers = run_day(
                            url, live, Path(tmp), symbols, runner, args.preset, address
                        )
                        rows.append(
                            summarize(db, len(symbols), runner, day, wall, outcomes, workers)
                        )
                        print_table(rows[-1:])
    print("\nseconds; stages summed over symbols, measured inside the task code; "
          "prefect+ = wall - in-task/workers (Prefect, process start-up, imbalance)")  # fmt: skip
    print_table(rows)

    def wall(db: str, runner: str, day: str) -> float:
        return next(
            r["wall"]
            for r in rows
            if (r["db"], r["symbols"], r["runner"], r["day"]) == (db, 4, runner, day)
        )

    parallel = ("processes", "dask-cluster")
    fields: dict[str, float] = {}
    for n, db in enumerate(args.databases.split(",")):
        prefix = "" if n == 0 else f"{db}_"
        fields[f"{prefix}next_day_4sym_s"] = min(
            wall(db, runner, "next") for runner in ("sequential", *parallel)
        )
        for runner in parallel:
            key = runner.replace("-", "_")
            for day in ("first", "next"):
                speedup = wall(db, "sequential", day) / wall(db, runner, day)
                fields[f"{prefix}{key}_{day}_speedup_4sym"] = speedup
        fields[f"{prefix}first_4sym_sequential_s"] = wall(db, "sequential", "first")
        fields[f"{prefix}first_4sym_dask_cluster_s"] = wall(db, "dask-cluster", "first")
    print(
        f"RESULT db={args.databases.split(',')[0]} "
        + " ".join(f"{k}={v:.2f}" for k, v in fields.items())
    )


if __name__ == "__main__":
    main()
