"""The whole daily pipeline, timed: 1 and 4 symbols, SQLite and PostgreSQL, sequential and in
parallel, the first run (full training) and the next day's (one new candle).

    .venv/bin/python -m bench.daily_run [--databases sqlite,postgresql] [--preset default]
        [--runners sequential,processes,dask-cluster] [--rounds N] [--no-single]
        [--prefect-db sqlite|postgresql] [--plots all|promoted|none] [--symbols N]

Each case gets a fresh database and runs the real ``flows.daily.daily_forecast`` flow under a
temporary Prefect server on the shared daily files, served from a local folder; the next day's
copy adds one candle per symbol. ``processes`` is a pool the flow run starts itself;
``dask-cluster`` a standing local cluster started beforehand with docs/scaling.md's commands
(``standing_cluster``). The 4-symbol cases (``--symbols N``: N) run in interleaved rounds,
each round also measuring two ceilings without Prefect or a database, and speed-ups are each
round's own ratios, median over rounds. docs/benchmarks.md says what the columns mean and
shows the current figures; bench/SCALING.md keeps every run.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import get_args

from bench.data import DAILY_FILES, load_daily
from bench.ingest import DEFAULT_POSTGRES, scratch_postgres
from candlecast.core.settings import PlotPolicy
from candlecast.dask_worker import prepare_worker

STAGES = [
    "fetch",
    "parse_validate",
    "upsert",
    "load",
    "slot",
    "prepare",
    "train",
    "evaluate",
    "register",
    "walk",
    "refit",
    "forecast",
    "score",
    "plots",
    "artifact",
]
PAIRS = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "BNBUSDT"]  # DAILY_FILES' pairs, in their order
RUNNERS = ["sequential", "processes", "dask-cluster"]
DASK = str(Path(sys.executable).with_name("dask"))  # the venv's command, as README runs it
CLUSTER_START_S = 180.0  # for a standing cluster's workers to import TensorFlow and warm up


def _seconds(line: str) -> float:
    unix = float(line.split(",", 1)[0])
    return unix / 1000.0 if unix >= 100_000_000_000 else unix


def _header_row(lines: list[str]) -> int:
    """The index of a CDD file's column-name line (after the site's own first line)."""
    return next(i for i, line in enumerate(lines) if line.lower().startswith("unix"))


def bench_symbols(count: int) -> list[str]:
    """``count`` symbols: the 4 real pairs, then as many more as asked, each a real pair's file
    under a new name (``BTC2USDT``, ``ETH2USDT``, ..., ``BTC3USDT``): the same candles, so the
    same work, for as many pairs as a user follows."""
    if count < 1:
        raise ValueError(f"symbols must be >= 1, got {count}")
    real = len(PAIRS)
    return [
        PAIRS[i] if i < real else PAIRS[i % real].replace("USDT", f"{i // real + 1}USDT")
        for i in range(count)
    ]


def renamed_pair(text: str, pair: str, new: str) -> str:
    """The CDD file ``text`` of ``pair`` as one of ``new`` (same quote currency, the same
    candles): the symbol column and the base currency's volume column renamed."""
    base, new_base = pair.removesuffix("USDT"), new.removesuffix("USDT")
    lines = text.splitlines()
    header = _header_row(lines)
    names = lines[header].split(",")
    at = [name.lower() for name in names].index("symbol")
    volume = f"volume {base.lower()}"
    names = [name[: -len(base)] + new_base if name.lower() == volume else name for name in names]
    rows = [line.split(",") for line in lines[header + 1 :]]
    for cells in rows:
        if len(cells) > at:
            cells[at] = cells[at].replace(base, new_base, 1)
    return "\n".join(lines[:header] + [",".join(cells) for cells in [names, *rows]]) + "\n"


def write_mirrors(root: Path, symbols: list[str]) -> tuple[Path, Path]:
    """(day 1, day 2) folders with a daily file per symbol (``bench_symbols``): day 2 holds
    the files as shipped, day 1 the same files without the newest final candle (and anything
    newer). Each real file is read and parsed once, however many symbols copy it."""
    day1, day2 = root / "day1", root / "day2"
    day1.mkdir()
    day2.mkdir()
    days: dict[str, tuple[str, str]] = {}  # pair: (day 1 text, day 2 text)
    for pair, path in zip(PAIRS, DAILY_FILES, strict=True):
        _, frame = load_daily(path)
        newest = frame.index[-1].timestamp()
        text = path.read_text()
        lines = text.splitlines()
        header = _header_row(lines)
        kept = lines[: header + 1] + [
            line for line in lines[header + 1 :] if line.strip() and _seconds(line) < newest
        ]
        days[pair] = ("\n".join(kept) + "\n", text)
    for n, symbol in enumerate(symbols):
        pair = PAIRS[n % len(PAIRS)]
        for folder, text in zip((day1, day2), days[pair], strict=True):
            renamed = text if symbol == pair else renamed_pair(text, pair, symbol)
            (folder / f"Binance_{symbol}_d.csv").write_text(renamed)
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


CPU_ROLES = ("flow", "workers", "server", "postgres")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far, by role: ``flow`` this process (the flow
    engine, a sequential run's work, the Dask client) and the standing cluster's scheduler,
    ``workers`` its other descendants, running (Dask nannies and workers, the idle ceiling
    pool) or ended and waited for (the pool a ``processes`` run starts and stops:
    ``RUSAGE_CHILDREN``), ``server`` the temporary Prefect server (uvicorn), ``postgres``
    every PostgreSQL process on the machine (the Prefect server's metadata with
    ``--prefect-db postgresql``, the candlecast database in the ``postgresql`` rows)."""
    import resource

    import psutil

    me = psutil.Process()
    roles = [("flow", me)]
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = child.cmdline()
            role = "server" if "uvicorn" in " ".join(command) else "workers"
            roles.append(("flow" if command[1:3] == [DASK, "scheduler"] else role, child))
    roles += [
        ("postgres", p)
        for p in psutil.process_iter(["name"])
        if (p.info["name"] or "").startswith("postgres")
    ]
    used = dict.fromkeys(CPU_ROLES, 0.0)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    used["workers"] = ended.ru_utime + ended.ru_stime
    for role, process in roles:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            used[role] += times.user + times.system
    return used


@contextmanager
def standing_cluster(environment: dict[str, str], workers: int = 2) -> Iterator[str]:
    """A Dask cluster started as README "Several machines" step 5 starts one, each part a
    process of its own with ``environment`` added to this one's: ``dask scheduler --preload
    candlecast.dask_scheduler``, and ``dask worker --nworkers N --nthreads 1 --preload
    candlecast.dask_worker``; yields the scheduler's address once every worker has registered
    (after its preload, so warmed up). Their output goes to log files, whose ends an error
    shows when the cluster does not come up within ``CLUSTER_START_S``."""
    from distributed import Client

    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        scheduler_file = Path(folder) / "scheduler.json"
        logs: list[Path] = []

        def start(*arguments: str) -> subprocess.Popen:
            logs.append(Path(folder) / f"{arguments[0]}.log")
            output = stack.enter_context(logs[-1].open("wb"))
            command = [DASK, *arguments, "--no-dashboard"]
            environ = os.environ | environment
            process = subprocess.Popen(  # noqa: S603 - the venv's dask, arguments from here
                command, env=environ, stdout=output, stderr=subprocess.STDOUT
            )
            stack.callback(_stop, process)
            return process

        def failed(why: str) -> RuntimeError:
            tails = "\n".join(f"{log.name}: ...{log.read_text()[-1500:]}" for log in logs)
            return RuntimeError(f"the Dask cluster did not come up: {why}\n{tails}")

        file = ["--scheduler-file", str(scheduler_file)]
        scheduler = start("scheduler", "--host", "127.0.0.1", "--port", "0", *file,
                          "--preload", "candlecast.dask_scheduler")  # fmt: skip
        start("worker", *file, "--nworkers", str(workers), "--nthreads", "1",
              "--preload", "candlecast.dask_worker")  # fmt: skip
        deadline = began + CLUSTER_START_S
        while not scheduler_file.exists():  # Client(scheduler_file=...) would wait for it forever
            if scheduler.poll() is not None or time.perf_counter() > deadline:
                raise failed("no scheduler file")
            time.sleep(0.05)
        with Client(scheduler_file=str(scheduler_file), timeout=CLUSTER_START_S) as client:
            try:
                client.wait_for_workers(workers, timeout=max(1.0, deadline - time.perf_counter()))
            except TimeoutError:
                raise failed(f"fewer than {workers} workers") from None
            address = client.scheduler.address
        print(f"dask cluster of {workers} workers up in {time.perf_counter() - began:.1f} s")
        yield address


def _stop(process: subprocess.Popen) -> None:
    """Stop a ``dask`` command as Ctrl-C would (it closes its workers first), else kill it."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def prefect_server(kind: str, admin_url: str) -> Iterator[None]:
    """A temporary Prefect server for the timed runs, with its metadata in a SQLite file
    (``prefect_test_harness``) or in a scratch PostgreSQL database on ``admin_url``'s server,
    and its concurrency leases on disk in a temporary home, as README "Several machines"
    step 2 sets a server up; this process's flows use it while the context is open."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    from tasks.training_slots import DISK_LEASE_STORAGE

    with tempfile.TemporaryDirectory() as home:
        leases = {  # under this home, not in a shared ~/.prefect
            PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE: DISK_LEASE_STORAGE,
            PREFECT_HOME: home,
        }
        if kind == "sqlite":
            from prefect.testing.utilities import prefect_test_harness

            with temporary_settings(updates=leases), prefect_test_harness(120):
                yield
            return
        from prefect.server.api.server import SubprocessASGIServer
        from sqlalchemy import make_url

        with scratch_postgres(admin_url) as url:
            asyncpg = make_url(url).set(drivername="postgresql+asyncpg")
            metadata = {PREFECT_SERVER_DATABASE_CONNECTION_URL: asyncpg.render_as_string(False)}
            with temporary_settings(updates=leases | metadata):
                server = SubprocessASGIServer()
                server.start(timeout=120)
                try:
                    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                        yield
                finally:
                    server.stop()


def run_day(
    url: str, mirror: Path, data_dir: Path, symbols: list[str], runner: str, preset: str,
    dask_address: str | None = None,
):  # fmt: skip
    """One flow run; (wall seconds, Running seconds, outcomes, workers)."""
    from candlecast.core.settings import get_settings
    from flows.daily import daily_forecast
    from tasks.runners import resolve_runner

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
    return wall, running_seconds(state.state_details.flow_run_id), outcomes, workers


def running_seconds(flow_run_id) -> float:
    """The flow run's start_time to end_time, as the Prefect server recorded them."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    return (flow_run.end_time - flow_run.start_time).total_seconds()


def summarize(
    db: str, symbols: int, runner: str, day: str, wall: float, running: float, outcomes,
    workers, cpu: dict[str, float],
):  # fmt: skip
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
        "running": running,
        "in_task": in_task,
        "overhead": wall - in_task / workers,
        "actions": "+".join(actions),
        **stages,
        **{f"cpu_{role}": seconds for role, seconds in cpu.items()},
        "cpu": sum(cpu.values()),
        "cores": sum(cpu.values()) / wall,
    }


def print_table(rows: list[dict]) -> None:
    head = f"{'db':<10} {'rnd':>3} {'sym':>3} {'runner':<12} {'day':<6} {'action':<10} "
    head += f"{'wall':>6} {'running':>7} "
    head += " ".join(f"{s[:8]:>8}" for s in STAGES) + f" {'in-task':>8} {'prefect+':>8}"
    head += "".join(f" {'cpu ' + role[:4]:>8}" for role in CPU_ROLES) + f" {'cores':>5}"
    print(head)
    for r in rows:
        line = (
            f"{r['db']:<10} {r.get('round', 1):>3} {r['symbols']:>3} {r['runner']:<12} "
            f"{r['day']:<6} {r['actions']:<10} {r['wall']:6.1f} {r['running']:7.2f} "
        )
        line += " ".join(f"{r[s]:8.2f}" for s in STAGES)
        line += f" {r['in_task']:8.1f} {r['overhead']:8.1f}"
        print(line + "".join(f" {r[f'cpu_{c}']:8.1f}" for c in CPU_ROLES) + f" {r['cores']:5.2f}")


def _one_training(path: str, epochs: int) -> tuple[float, float]:
    """(start, end) of one ``default`` training of ``epochs`` epochs (no early stopping), on
    ``time.perf_counter``, which is the system-wide monotonic clock here: comparable across
    processes."""
    from models.presets import preset
    from tasks.train import train_model

    _, frame = load_daily(Path(path))
    config = preset("default").replace(patience=None, epochs=epochs)
    began = time.perf_counter()
    train_model(frame, config)
    return began, time.perf_counter()


def parallel_ceiling(pool: Executor, epochs: int = 15) -> tuple[float, float, float]:
    """What two cores give the training just now: the same ``default`` training of BTC alone
    in one of ``pool``'s two single-threaded worker processes, then twice at once in both.
    Returns (alone s, both s, speed-up = 2 * alone / both); no Prefect, no database."""
    btc = str(DAILY_FILES[0])
    for warm in [pool.submit(_one_training, btc, 1) for _ in range(2)]:
        warm.result()  # this file's first training, in both workers
    began, ended = pool.submit(_one_training, btc, epochs).result()
    alone = ended - began
    spans = [f.result() for f in [pool.submit(_one_training, btc, epochs) for _ in range(2)]]
    both = max(end for _, end in spans) - min(start for start, _ in spans)
    return alone, both, 2 * alone / both


def symbol_step(symbol: str, url: str, mirror: str, data_dir: str) -> None:
    """One symbol's daily step as a plain function call: no Prefect run, no slot."""
    from candlecast.core.settings import Settings
    from tasks.daily import forecast_symbol

    forecast_symbol.fn(
        symbol, settings=Settings(database_url=url, cdd_base_url=mirror, data_dir=data_dir)
    )


def engine_free(
    pool: Executor, tmp: Path, day1: Path, day2: Path, symbols: list[str]
) -> dict[str, float]:
    """The whole per-symbol pipeline for the symbols, first and next day, without Prefect
    or Dask: ``forecast_symbol.fn`` one symbol after another in this process (TensorFlow on
    every core, as in a sequential flow run), then spread over ``pool``'s two single-threaded
    processes; each on a fresh SQLite database. What two cores give the pipeline itself, to
    read the engines' cost against. Returns walls keyed ``{runner}_{day}``."""
    walls: dict[str, float] = {}
    for runner in ("sequential", "parallel"):
        with database("sqlite", tmp, "") as url:
            for day, files in (("first", day1), ("next", day2)):
                steps = [(s, url, str(files), str(tmp)) for s in symbols]
                began = time.perf_counter()
                if runner == "sequential":
                    for step in steps:
                        symbol_step(*step)
                else:
                    for future in [pool.submit(symbol_step, *step) for step in steps]:
                        future.result()
                walls[f"{runner}_{day}"] = time.perf_counter() - began
    return walls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of a server")
    parser.add_argument("--no-single", action="store_true", help="skip the 1-symbol cases")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="runners to time")
    parser.add_argument(
        "--prefect-db",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="where the temporary Prefect server keeps its own metadata",
    )
    parser.add_argument(
        "--symbols",
        type=int,
        default=4,
        help="symbols per run: the 4 real pairs, then copies of their files under new names",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the --symbols cases, interleaved"
    )
    parser.add_argument(
        "--plots",
        choices=get_args(PlotPolicy),
        default="all",
        help="CANDLECAST_PLOTS for every run (the flows, the workers, the engine-free ceiling)",
    )
    args = parser.parse_args(argv)
    os.environ["CANDLECAST_PLOTS"] = args.plots  # before any worker process starts
    runners, databases = args.runners.split(","), args.databases.split(",")
    if runners[0] != "sequential" or not set(runners) <= set(RUNNERS):
        parser.error(f"--runners: sequential first, then any of {RUNNERS[1:]}")
    from models import lstm  # noqa: F401 - TensorFlow imported before any timed run, as the
    # standing cluster's workers have it: the comparison is of the runs, not of imports

    rows: list[dict] = []
    ceilings: list[float] = []
    free: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stack.enter_context(prefect_server(args.prefect_db, args.postgres))
        pool = stack.enter_context(  # workers set up as a standing Dask cluster's
            ProcessPoolExecutor(2, get_context("spawn"), prepare_worker, (1,))
        )
        symbols = bench_symbols(args.symbols)
        day1, day2 = write_mirrors(tmp, symbols)
        live = tmp / "live"  # the "CDD" every run reads: each day's files copied in
        for round_ in range(1, args.rounds + 1):
            alone, both, ceiling = parallel_ceiling(pool)
            ceilings.append(ceiling)
            print(f"round {round_}: one default training alone {alone:.2f} s, two side by side "
                  f"{both:.2f} s: two cores give this workload {ceiling:.2f}x")  # fmt: skip
            free.append(engine_free(pool, tmp, day1, day2, symbols))
            print(f"round {round_}: without Prefect or Dask, {len(symbols)} symbols " + ", ".join(
                f"{day} day {free[-1][f'sequential_{day}']:.2f} s -> "
                f"{free[-1][f'parallel_{day}']:.2f} s" for day in ("first", "next")))  # fmt: skip
            cases = [] if args.no_single or round_ > 1 else [(symbols[:1], "sequential")]
            cases += [(symbols, runner) for runner in runners]
            for db in databases:
                for run_symbols, runner in cases:
                    with contextlib.ExitStack() as case:
                        url = case.enter_context(database(db, tmp, args.postgres))
                        address = None
                        if runner == "dask-cluster":
                            env = settings_environment(url, live, tmp)
                            address = case.enter_context(standing_cluster(env))
                        for day, files in (("first", day1), ("next", day2)):
                            shutil.copytree(files, live, dirs_exist_ok=True)
                            before = cpu_seconds()
                            wall, running, outcomes, workers = run_day(
                                url, live, tmp, run_symbols, runner, args.preset, address
                            )
                            after = cpu_seconds()
                            cpu = {role: after[role] - before[role] for role in CPU_ROLES}
                            row = summarize(db, len(run_symbols), runner, day, wall, running,
                                            outcomes, workers, cpu)  # fmt: skip
                            rows.append(row | {"round": round_})
                            print_table(rows[-1:])
    print("\nseconds; running = the flow run's Running time on the Prefect server's clock; "
          "stages summed over symbols, measured inside the task code; "
          "prefect+ = wall - in-task/workers (Prefect, process start-up, imbalance); cpu: "
          "CPU seconds used in the run by role (cpu_seconds); cores = sum / wall")  # fmt: skip
    print_table(rows)
    fields = result_fields(rows, databases, runners, len(symbols))
    fields["parallel_ceiling"] = statistics.median(ceilings)
    for day in ("first", "next"):
        ratios = [f[f"sequential_{day}"] / f[f"parallel_{day}"] for f in free]
        fields[f"engine_free_{day}_speedup_{len(symbols)}sym"] = statistics.median(ratios)
        print(f"without Prefect or Dask, {day} day: {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    print(f"\nrounds: {args.rounds}; speed-ups are each round's sequential wall over its "
          "parallel wall, the median over rounds (min-max); ceiling: two trainings side by side "
          f"vs one, per round: {', '.join(f'{c:.2f}x' for c in ceilings)}")  # fmt: skip
    print(
        f"RESULT db={databases[0]} prefect_db={args.prefect_db} plots={args.plots} "
        f"rounds={args.rounds} " + " ".join(f"{k}={v:.2f}" for k, v in fields.items())
    )


def result_fields(
    rows: list[dict], databases: list[str], runners: list[str], count: int = 4
) -> dict[str, float]:
    """The RESULT line's figures for the ``count``-symbol cases (keys ``..._4sym...`` for 4):
    per database, the fastest next-day wall, and each parallel runner's speed-up over
    sequential per day (median over rounds) on the wall and, keyed ``..._running``, on the
    flow runs' Running time, each also printed with its range. ``parallel_speedup_4sym``
    (first day) and ``parallel_speedup_4sym_next`` repeat the first database's figures for the
    standing Dask cluster, else the first parallel runner timed.

    Each round's wall speed-up is also split exactly into two ratios over the sequential
    run's: the cores the parallel run kept busy (``cores``: CPU seconds of every role over
    the wall) and the CPU seconds it used for the same work (``cpu``); speed-up = cores
    ratio / CPU ratio. ``..._cpu_ratio_4sym`` is the CPU ratio's median over rounds: above 1,
    running in parallel cost more CPU than one after another."""

    def walls(db: str, runner: str, day: str, measure: str = "wall") -> dict[int, float]:
        return {
            r["round"]: r[measure]
            for r in rows
            if (r["db"], r["symbols"], r["runner"], r["day"]) == (db, count, runner, day)
        }

    def over_sequential(db: str, runner: str, day: str, measure: str) -> dict[int, float]:
        """Each round's ``measure`` of ``runner`` over its own sequential run's."""
        sequential = walls(db, "sequential", day, measure)
        return {r: value / sequential[r] for r, value in walls(db, runner, day, measure).items()}

    fields: dict[str, float] = {}
    sym = f"{count}sym"  # in every key: the figures are for ``count`` symbols
    # the headline: the layout README recommends, not the best of the runners timed
    headline = "dask-cluster" if "dask-cluster" in runners else next(iter(runners[1:]), None)
    for n, db in enumerate(databases):
        prefix = "" if n == 0 else f"{db}_"
        fields[f"{prefix}next_day_{sym}_s"] = min(
            min(walls(db, runner, "next").values()) for runner in runners
        )
        for runner in runners[1:]:
            for day, measure in itertools.product(("first", "next"), ("wall", "running")):
                sequential = walls(db, "sequential", day, measure)
                parallel = walls(db, runner, day, measure)
                ratios = [sequential[r] / parallel[r] for r in sorted(parallel)]
                key = f"{prefix}{runner.replace('-', '_')}_{day}_speedup_{sym}"
                key += "_running" if measure == "running" else ""
                fields[key] = ratio = statistics.median(ratios)
                print(f"{db} {runner} {day} day, {measure}: {ratio:.2f}x "
                      f"({min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
                if (n, runner, measure) == (0, headline, "wall"):
                    fields[f"parallel_speedup_{sym}" + ("_next" if day == "next" else "")] = ratio
            for day in ("first", "next"):
                busy, cpu = (over_sequential(db, runner, day, m) for m in ("cores", "cpu"))
                key = f"{prefix}{runner.replace('-', '_')}_{day}_cpu_ratio_{sym}"
                fields[key] = statistics.median(cpu.values())
                print(f"{db} {runner} {day} day, wall speed-up = the cores it kept busy / the CPU "
                      "it used, each over sequential's: " + "; ".join(
                          f"round {r} {busy[r] / cpu[r]:.2f}x = {busy[r]:.2f}x / {cpu[r]:.2f}x"
                          for r in sorted(cpu)))  # fmt: skip
        fields[f"{prefix}first_{sym}_sequential_s"] = statistics.median(
            walls(db, "sequential", "first").values()
        )
    return fields


if __name__ == "__main__":
    main()
