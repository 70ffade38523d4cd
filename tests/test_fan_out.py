"""The daily fan-out on two local workers (Prefect process pool, Dask) into PostgreSQL, the
training concurrency limit, and the per-series ingest lock on both databases."""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, task
from sqlalchemy import func, select

from candlecast.core.settings import Settings, get_settings
from db.locks import LockBusy, named_lock
from db.schema import Candle, Forecast, ModelVersion
from db.session import session_factory
from flows.daily import daily_forecast
from tasks.ingest import ingest_symbol
from tasks.report import plots_key
from tasks.runners import PROFILER_CALLBACKS, SEQUENTIAL_UP_TO_CORES, fan_out, resolve_runner
from tasks.threads import cores
from tasks.training_slots import MEMORY_LEASE_STORAGE, _ensure_training_limit, training_limit_name
from tests.conftest import QuietHandler, wavy_cdd_csv

SYMBOLS = ["WAVEUSDT", "WAVFUSDT", "WAVGUSDT"]


def _json_printed_by(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh Python process; the JSON its last line of output holds."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_worker_limits_blas_threads_loaded_before_it_was_prepared() -> None:
    """`limit_threads`, run first in a spawned worker, also shrinks the BLAS pool that NumPy
    loaded before it (one thread per core by default), not only the libraries loaded after."""
    code = (
        "import json, numpy; from tasks.threads import limit_threads; limit_threads(1); "
        "from threadpoolctl import threadpool_info; "
        "print(json.dumps([(i['internal_api'], i['num_threads']) for i in threadpool_info()]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    pools = [tuple(p) for p in _json_printed_by(code, env)]
    assert ("openblas", 1) in pools or ("mkl", 1) in pools  # NumPy's, loaded first
    assert all(threads == 1 for _, threads in pools), pools


def test_freeze_heap_collects_the_garbage_then_freezes_what_is_alive_once() -> None:
    """In a fresh process: a reference cycle already garbage is collected, not frozen; a live
    one leaves the collector's generations; a second call freezes nothing more."""
    code = (
        "import gc, json, weakref\n"
        "class Node: pass\n"
        "dropped = Node(); dropped.me = dropped; gone = weakref.ref(dropped); del dropped\n"
        "kept = Node(); kept.me = kept\n"
        "from tasks.threads import freeze_heap\n"
        "freeze_heap(); frozen = gc.get_freeze_count()\n"
        "later = Node(); later.me = later\n"
        "freeze_heap()\n"
        "tracked = gc.get_objects()\n"
        "print(json.dumps({'collected': gone() is None, 'frozen': frozen, "
        "'again': gc.get_freeze_count() - frozen, 'kept': any(o is kept for o in tracked), "
        "'later': any(o is later for o in tracked)}))"
    )
    seen = _json_printed_by(code)
    assert seen["collected"] and seen["frozen"] > 0, seen
    assert seen == seen | {"again": 0, "kept": False, "later": True}


def test_runner_choice() -> None:
    assert resolve_runner("auto", 1, None, None) == ("sequential", 1)
    assert resolve_runner("auto", 4, 2, "tcp://scheduler:8786") == ("dask", 2)
    assert resolve_runner("processes", 3, 8, None) == ("processes", 3)  # no idle workers
    assert resolve_runner("sequential", 4, 2, None) == ("sequential", 1)
    expected = ("processes", 4) if cores() > SEQUENTIAL_UP_TO_CORES else ("sequential", 1)
    assert resolve_runner("auto", 4, 4, None) == expected
    # a flow run per symbol on the work pool: only when asked for, whatever the workers
    assert resolve_runner("deployments", 3, 1, "tcp://scheduler:8786") == ("deployments", 3)
    assert all(
        resolve_runner("auto", n, w, a)[0] != "deployments"
        for n, w, a in product((1, 4, 64), (None, 1, 64), (None, "tcp://scheduler:8786"))
    )
    with pytest.raises(ValueError, match="workers must be >= 1"):
        resolve_runner("processes", 2, 0, None)


@pytest.fixture
def fan_out_env(
    prefect_harness: None, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings (through the environment, as worker processes read them) on PostgreSQL and a
    local mirror of three learnable symbols."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for symbol in SYMBOLS:
        (mirror / f"Binance_{symbol}_d.csv").write_bytes(wavy_cdd_csv(symbol))
    monkeypatch.setenv("CANDLECAST_DATABASE_URL", db_url)
    monkeypatch.setenv("CANDLECAST_CDD_BASE_URL", str(mirror))
    monkeypatch.setenv("CANDLECAST_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CANDLECAST_HTTP_BACKOFF_S", "0")
    monkeypatch.delenv("CANDLECAST_DASK_ADDRESS", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _stored(url: str) -> dict[str, set[str]]:
    with session_factory(url)() as session:
        return {
            "versions": set(session.scalars(select(ModelVersion.symbol))),
            "forecasts": set(session.scalars(select(Forecast.symbol))),
        }


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_worker_processes_forecast_every_symbol_despite_a_failing_one(
    fan_out_env: Settings,
) -> None:
    from prefect.client.orchestration import get_client

    state = daily_forecast(
        symbols=[*SYMBOLS, "NOPEUSDT"],
        preset="tiny",
        horizon=2,
        runner="processes",
        workers=2,
        return_state=True,
    )
    assert state.is_failed() and "NOPEUSDT" in state.message
    assert "WAVEUSDT" not in state.message
    stored = _stored(fan_out_env.sqlalchemy_url())
    assert stored == {"versions": set(SYMBOLS), "forecasts": set(SYMBOLS)}
    with get_client(sync_client=True) as client:  # the workers trained under the host's limit
        limit = client.read_global_concurrency_limit_by_name(training_limit_name())
    assert limit.limit == cores() and limit.active_slots == 0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_dask_workers_forecast_every_symbol(fan_out_env: Settings) -> None:
    from prefect.artifacts import Artifact

    state = daily_forecast(
        symbols=SYMBOLS, preset="tiny", horizon=2, runner="dask", workers=2, return_state=True
    )
    outcomes = state.result()
    assert sorted(o.symbol for o in outcomes) == SYMBOLS
    assert all(o.version == 1 and len(o.forecasts) == 2 for o in outcomes)
    stages = {"fetch", "upsert", "slot", "train", "register", "plots", "artifact", "task"}
    assert all(stages <= o.timings.keys() for o in outcomes)
    stored = _stored(fan_out_env.sqlalchemy_url())
    assert stored == {"versions": set(SYMBOLS), "forecasts": set(SYMBOLS)}
    for symbol in SYMBOLS:  # each worker attached its symbols' plots to this flow run
        plots = Artifact.get(plots_key("Binance", symbol))
        assert plots is not None and plots.flow_run_id == state.state_details.flow_run_id
        assert plots.task_run_id is not None and symbol in plots.data


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_standing_dask_cluster_named_in_the_settings_gets_every_symbol(
    fan_out_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a deployment runs it: a cluster started beforehand with README's `dask scheduler` and
    `dask worker` commands (preloaded with candlecast.dask_scheduler and candlecast.dask_worker),
    its address in CANDLECAST_DASK_ADDRESS, runner left at auto."""
    from distributed import Client

    from bench.daily_run import standing_cluster

    settings_env = {k: v for k, v in os.environ.items() if k.startswith("CANDLECAST_")}
    with standing_cluster(settings_env, 2) as address, Client(address) as client:
        # the scheduler unpickles each task graph: the pipeline imported before the first one
        assert client.run_on_scheduler(lambda: "flows.daily" in sys.modules)
        warm = client.run(
            lambda: (
                os.environ["TF_NUM_INTRAOP_THREADS"],
                "tensorflow" in sys.modules,
                gc.get_freeze_count() > 100_000,  # TensorFlow's objects among them
            )
        )
        assert list(warm.values()) == [("1", True, True)] * 2  # sized, imported, frozen
        callbacks = client.run(lambda dask_worker: set(dask_worker.periodic_callbacks))
        assert all(_without_profiler(c) for c in callbacks.values())
        monkeypatch.setenv("CANDLECAST_DASK_ADDRESS", address)
        get_settings.cache_clear()
        assert resolve_runner("auto", len(SYMBOLS), None, get_settings().dask_address)[0] == "dask"
        outcomes = daily_forecast(symbols=SYMBOLS, preset="tiny", horizon=2)
    assert sorted(o.symbol for o in outcomes) == SYMBOLS
    assert all(o.version == 1 and len(o.forecasts) == 2 for o in outcomes)
    stored = _stored(fan_out_env.sqlalchemy_url())
    assert stored == {"versions": set(SYMBOLS), "forecasts": set(SYMBOLS)}


def _without_profiler(callbacks: set[str]) -> bool:
    """A Dask worker's periodic callbacks: running (it heartbeats), but not profiling."""
    return "heartbeat" in callbacks and not callbacks & set(PROFILER_CALLBACKS)


@task
def _worker_callbacks(symbol: str) -> set[str]:
    from distributed import get_worker

    return set(get_worker().periodic_callbacks)


@pytest.mark.slow
def test_the_local_dask_cluster_runs_its_workers_without_the_profiler(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CANDLECAST_DASK_ADDRESS", raising=False)
    get_settings.cache_clear()

    @flow
    def callbacks() -> list[set[str]]:  # as daily_forecast calls fan_out: inside its flow run
        states = fan_out(_worker_callbacks, ["A", "B"], {}, runner="dask", workers=2)
        return [state.result() for state in states.values()]

    assert all(_without_profiler(c) for c in callbacks())


@task(timeout_seconds=3600)  # as forecast_symbol has one
def _timeout_seen(symbol: str) -> float | None:
    """The timeout the task engine runs this task run with; symbol HANG never finishes."""
    from prefect.context import TaskRunContext

    if symbol == "HANG":
        threading.Event().wait(600)  # a symbol stuck in a call that never returns
    return TaskRunContext.get().task.timeout_seconds


@pytest.mark.slow
def test_a_symbol_stuck_on_a_dask_worker_fails_at_the_deadline_without_the_others(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask worker runs tasks in a thread, where Prefect's task timeout cannot interrupt (and
    warns so on every task run): the tasks go without one, and the flow stops waiting for a
    symbol at `SYMBOL_TIMEOUT_S`, reporting it failed while the others complete."""
    monkeypatch.delenv("CANDLECAST_DASK_ADDRESS", raising=False)
    monkeypatch.setattr("tasks.runners.SYMBOL_TIMEOUT_S", 15.0)
    get_settings.cache_clear()

    @flow
    def stuck() -> dict[str, Any]:
        return fan_out(_timeout_seen, ["FAST", "HANG"], {}, runner="dask", workers=2)

    states = stuck()
    assert states["FAST"].is_completed() and states["FAST"].result() is None
    assert states["HANG"].is_failed()
    assert states["HANG"].message == "HANG: still Running after 15 s"


def test_training_limit_is_created_once_when_processes_first_train_together(
    prefect_harness: None,
) -> None:
    """Each worker process's first training creates the host's limit unless it exists; when
    they start at once, all but one find it created meanwhile (Prefect answers 409)."""
    from prefect.client.orchestration import get_client

    errors: list[Exception] = []

    def first_training(name: str, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            _ensure_training_limit.__wrapped__(name, 3)  # past the per-process cache
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    names = [f"candlecast-training-race-{i}" for i in range(5)]
    for name in names:
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=first_training, args=(name, barrier)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    with get_client(sync_client=True) as client:
        assert [client.read_global_concurrency_limit_by_name(n).limit for n in names] == [3] * 5


def test_a_server_that_keeps_leases_in_memory_is_named_in_a_warning(
    prefect_harness: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Prefect's test server keeps its concurrency leases in memory, as a server started
    without README's setting does: the first training of a process says so, naming the fix
    (tests/e2e/test_training_slots.py: a server with them on disk gets no warning)."""
    with caplog.at_level(logging.WARNING, logger="candlecast"):
        _ensure_training_limit.__wrapped__("candlecast-training-memory-leases", 1)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(
        f"the Prefect server keeps concurrency leases in memory ({MEMORY_LEASE_STORAGE}): "
        "if it restarts while a training holds a slot of candlecast-training-memory-leases"
    )
    assert "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=" in warning


def test_named_lock_excludes_a_second_holder(db_url: str) -> None:
    with named_lock(db_url, "ingest:Binance:WAVEUSDT:d"):
        with pytest.raises(LockBusy):
            with named_lock(db_url, "ingest:Binance:WAVEUSDT:d", wait=False):
                pass
        with named_lock(db_url, "ingest:Binance:ADAUSDT:d", wait=False):
            pass  # another series is free
    with named_lock(db_url, "ingest:Binance:WAVEUSDT:d", wait=False):
        pass  # released


class _Signal(logging.Handler):
    def __init__(self, needle: str) -> None:
        super().__init__(logging.INFO)
        self.needle, self.seen = needle, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


def test_second_ingest_of_a_series_waits_for_the_first(
    settings: Settings, mirror_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"cdd_base_url": str(mirror_dir)})
    url = settings.sqlalchemy_url()
    logger = logging.getLogger("candlecast")
    signal = _Signal("another ingest of Binance d is running")
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(signal)
    results: list[object] = []
    try:
        with named_lock(url, "ingest:Binance:WAVEUSDT:d"):  # "the first ingest"
            second = threading.Thread(
                target=lambda: results.append(ingest_symbol.fn("WAVEUSDT", settings=settings))
            )
            second.start()
            assert signal.seen.wait(timeout=120), "the second ingest never waited"
            assert second.is_alive()
            with session_factory(url)() as session:
                assert session.scalar(select(func.count()).select_from(Candle)) == 0
        second.join(timeout=120)
    finally:
        logger.removeHandler(signal)
    (result,) = results
    assert result.inserted == 400 and result.updated == 0


class _FirstRequestHangs(QuietHandler):
    """Serves the mirror, except the first request for ``victim``'s file: that one hangs
    until ``release`` is set, its client's address in ``hung``."""

    victim: str
    hung: list[tuple[str, int]]
    release: threading.Event
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        if self.victim in self.path and not self.hung:
            self.hung.append(self.client_address)
            self.release.wait()
            return
        super().do_GET()


def _pid_on_port(port: int) -> int | None:
    """The process whose TCP socket is bound to local ``port`` (None until it shows)."""
    import psutil

    return next((c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port), None)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_dask_worker_killed_mid_symbol_has_it_run_again_and_every_symbol_completes(
    fan_out_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standing cluster's worker process is SIGKILLed (out of memory, say) in the middle of
    a symbol's download, holding its ingest lock: Dask runs that symbol again on a live
    worker, which takes the lock (released by the server as the connection died) and writes
    one version of it; the other symbols are not disturbed."""
    from bench.daily_run import DASK, standing_cluster

    victim = SYMBOLS[1]
    handler = type(
        "Handler",
        (_FirstRequestHangs,),
        {"victim": victim, "hung": [], "release": threading.Event(), "requests": []},
    )
    mirror = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(tmp_path / "mirror"))
    )
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{mirror.server_address[1]}"
    monkeypatch.setenv("CANDLECAST_CDD_BASE_URL", base_url)
    # only the kill ends the hung download; without it the flow gives up on the symbol
    monkeypatch.setenv("CANDLECAST_HTTP_READ_TIMEOUT_S", "3600")
    monkeypatch.setattr("tasks.runners.SYMBOL_TIMEOUT_S", 120.0)
    killed: list[list[str]] = []  # the command line of the killed process's parent

    def kill_the_worker_that_hangs() -> None:
        while not handler.hung:
            if handler.release.wait(0.1):
                return
        port = handler.hung[0][1]
        while (pid := _pid_on_port(port)) is None:
            if handler.release.wait(0.1):
                return
        import psutil

        parent = psutil.Process(pid).parent()
        os.kill(pid, signal.SIGKILL)
        killed.append(parent.cmdline() if parent else [])

    settings_env = {k: v for k, v in os.environ.items() if k.startswith("CANDLECAST_")}
    killer = threading.Thread(target=kill_the_worker_that_hangs, daemon=True)
    try:
        with standing_cluster(settings_env, 2) as address:
            monkeypatch.setenv("CANDLECAST_DASK_ADDRESS", address)
            get_settings.cache_clear()
            killer.start()
            state = daily_forecast(symbols=SYMBOLS, preset="tiny", horizon=2, return_state=True)
    finally:
        handler.release.set()
        mirror.shutdown()
        mirror.server_close()
    (nanny,) = killed  # a process that `dask worker` started, not this one
    assert nanny[1:3] == [DASK, "worker"] and "candlecast.dask_worker" in nanny
    assert state.is_completed(), state.message
    outcomes = state.result()
    assert sorted(o.symbol for o in outcomes) == SYMBOLS
    assert all(o.version == 1 and len(o.forecasts) == 2 for o in outcomes)
    asked = [path for path in handler.requests if victim in path]
    assert len(asked) == 2  # the download that hung, and the rerun's
    with session_factory(fan_out_env.sqlalchemy_url())() as session:
        versions = session.scalars(select(ModelVersion.symbol).order_by(ModelVersion.symbol))
        assert list(versions) == SYMBOLS  # one version each, the victim's written once
