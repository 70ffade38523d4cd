"""Where the per-symbol steps run: in this process, in a local process pool, on Dask, or as
flow runs of their own on a work pool.

- ``sequential``: one symbol after another in the flow's process (TensorFlow may use every core).
- ``processes``: Prefect's ``ProcessPoolTaskRunner``, one worker process per core by default,
  each with TensorFlow's thread pools cut to ``cores // workers`` so the machine is not
  oversubscribed.
- ``dask``: prefect-dask's ``DaskTaskRunner`` on the cluster at ``CANDLECAST_DASK_ADDRESS``,
  or on a local cluster of ``workers`` single-threaded worker processes when none is set.
- ``deployments``: one flow run of the ``symbol`` deployment (``SYMBOL_DEPLOYMENT``,
  ``flows/daily.py:forecast_one`` in ``prefect.yaml``) per symbol, run by whichever Prefect
  worker of its work pool picks it up; chosen explicitly, never by ``auto``.

On top of any runner, :func:`training_slot` takes a slot of the Prefect global concurrency
limit ``candlecast-training-<host>`` (as many slots as the host has cores), so several flow
runs or workers on one machine never train more models at once than it has cores for.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

Runner = Literal["auto", "sequential", "processes", "dask", "deployments"]
SEQUENTIAL_UP_TO_CORES = 2  # runner "auto" stays sequential on machines this small
SYMBOL_DEPLOYMENT = "forecast-symbol/symbol"  # flow/deployment, as prefect.yaml registers it
DEPLOYMENT_POLL_S = 2.0  # how often the parent reads its symbol flow runs' states
DEPLOYMENT_WAIT_S = 6 * 3600.0  # a symbol flow run not final by then is reported failed
DEPLOYMENT_START_WARNING_S = 600.0  # symbol flow runs no worker took by then: warned, once
SYMBOL_TIMEOUT_S = 3 * 3600.0  # a symbol's step still running by then is failed
# A training slot is a lease, renewed every 3/4 of it while the training runs. The shortest
# Prefect takes: a slot whose holder died (a killed worker) is free again after this plus the
# server's repossessor pass (15 s), not after Prefect's default 5 minutes.
TRAINING_LEASE_S = 60.0
# Prefect 3.9's default keeps leases in the server's memory: a server restart while a training
# holds a slot loses its lease, and the slot stays counted for good (README "Several machines").
# DISK_LEASE_STORAGE keeps them under the server's PREFECT_HOME across restarts.
MEMORY_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.memory"
DISK_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
# Dask workers sample every running thread's stack every 10 ms for the dashboard's Profile
# page. Under a Prefect task run (deep stacks, much Python between TensorFlow calls) that cost
# the next day's per-symbol work 12-16% here (README "Scaling out", Benchmarks), so the
# workers candlecast starts run without it; the preload stops it in a standing cluster.
DASK_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
PROFILER_CALLBACKS = ("profile", "profile-cycle")  # the worker's periodic callbacks for it
THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_runner(
    runner: Runner, symbols: int, workers: int | None, dask_address: str | None
) -> tuple[Literal["sequential", "processes", "dask", "deployments"], int]:
    """The runner and the number of workers to use (for ``deployments``: the number of flow
    runs started at once, one per symbol; the work pool's workers decide where they run).

    ``auto``: Dask when a cluster address is configured; else a process per core when there
    is more than one symbol and more than ``SEQUENTIAL_UP_TO_CORES`` cores; else sequential.
    On 2 cores the pool's start-up (spawning, importing TensorFlow and Prefect in each worker)
    costs more than running the symbols side by side saves (bench/daily_run.py, 4 symbols:
    1.07x the first day, 0.56x the next; a standing Dask cluster: 1.67-1.79x and 1.33x;
    README "Scaling out").
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    count = workers or cores()
    if runner == "auto":
        if dask_address:
            runner = "dask"
        elif symbols > 1 and min(count, cores()) > SEQUENTIAL_UP_TO_CORES:
            runner = "processes"
        else:
            runner = "sequential"
    if runner == "sequential":
        return "sequential", 1
    if runner == "deployments":
        return "deployments", symbols
    return runner, max(1, min(count, symbols))


def threads_per_worker(workers: int) -> int:
    """TensorFlow threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, cores() // max(1, workers))


def thread_environment(threads: int) -> dict[str, str]:
    """Environment variables that size TensorFlow's and BLAS's thread pools (read when the
    libraries load, so they must be set before TensorFlow is imported)."""
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def limit_threads(threads: int) -> None:
    """Size this process's TensorFlow thread pools; run first thing in a fresh worker.

    Sets the environment variables for libraries not loaded yet, resizes the BLAS and OpenMP
    pools of those already loaded (a spawned worker that imports its parent's main module
    loads NumPy's OpenBLAS, one thread per core, before this runs: two such workers, each
    with idle BLAS threads spinning, trained side by side no faster than one after the
    other), then configures TensorFlow itself (which must happen before it runs any
    operation: a no-op with a log line after).
    """
    from threadpoolctl import threadpool_limits

    os.environ.update(thread_environment(threads))
    threadpool_limits(threads)  # kept for the process's life
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialized in this process: env vars applied
        import logging

        logging.getLogger("candlecast").info("TensorFlow already running; threads unchanged")


@cache  # once per process (a forked child inherits the frozen heap and the cache)
def freeze_heap() -> None:
    """Once per process: collect garbage, then exempt every object alive now from the cyclic
    garbage collector's future passes (``gc.freeze``).

    With TensorFlow, Keras, pandas, matplotlib and Prefect loaded a process holds about
    420,000 tracked objects, and each full collection walks them all: 0.3-0.4 s here, about
    one in every three symbols' plots, which make many short-lived objects (README "Scaling
    out", Benchmarks). What is alive when the pipeline first runs (modules, TensorFlow's
    state, a worker's warm-up) lives as long as the process. Objects frozen here are still
    freed when their last reference goes; only a reference cycle among them that later
    becomes garbage stays, once, for the process's life.

    Whether it ran is the cache's to know, not ``gc.get_freeze_count()``: that walks the whole
    frozen list, 48 ms for the 510,000 objects of a warmed-up worker, on every symbol.
    """
    gc.collect()
    gc.freeze()


def task_runner(
    runner: Literal["processes", "dask"], workers: int, dask_address: str | None = None
) -> Any:
    """A Prefect task runner (a context manager with ``submit(task, parameters)``)."""
    threads = threads_per_worker(workers)
    if runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(
            max_workers=workers, initializer=limit_threads, initargs=(threads,)
        )
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "env": thread_environment(threads),
        }
    )


def training_limit_name() -> str:
    """The Prefect global concurrency limit that caps trainings on this host."""
    return f"candlecast-training-{socket.gethostname()}"


@cache
def _ensure_training_limit(name: str, slots: int) -> None:
    """Create the limit unless it exists; two processes starting at once may both try, and
    the one that loses finds it created (Prefect's upsert is not atomic). Once per process,
    warn where the server would lose the limit's leases on a restart: a configured server
    (``PREFECT_API_URL``), not the temporary one a run without it starts and stops itself."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import get_current_settings

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                limit = GlobalConcurrencyLimitCreate(name=name, limit=slots)
                client.create_global_concurrency_limit(limit)
        storage = _lease_storage(client) if get_current_settings().api.url else None
    if storage == MEMORY_LEASE_STORAGE:
        from tasks.logs import run_logger

        run_logger().warning(
            "the Prefect server keeps concurrency leases in memory (%s): if it restarts while "
            "a training holds a slot of %s, that slot stays taken for good; start the server "
            'with PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=%s (README "Several machines")',
            storage,
            name,
            DISK_LEASE_STORAGE,
        )


def _lease_storage(client: Any) -> str | None:
    """The server's ``server.concurrency.lease_storage`` setting, or None where it does not
    say (Prefect Cloud has no such endpoint, an older server no such setting)."""
    import httpx

    try:
        response = client.request("GET", "/admin/settings")
        response.raise_for_status()
        return response.json()["server"]["concurrency"]["lease_storage"]
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


@contextmanager
def training_slot() -> Iterator[None]:
    """Hold one of this host's training slots while training (inside a Prefect run).

    The limit is created on first use with one slot per core; an operator may change it
    (``prefect gcl update candlecast-training-<host> --limit N``) and the change is kept.
    Outside a Prefect run (CLI, tests, benchmarks calling ``.fn``) nothing is taken.

    The slot is a lease of ``TRAINING_LEASE_S``. A renewal that fails (the server down at that
    moment: a restart, an upgrade) is logged and the training goes on, where Prefect's strict
    default would cancel it: the training needs nothing from the server, and the worst case,
    the lease expiring meanwhile, is one training more than the host has cores for a while.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    if not (TaskRunContext.get() or FlowRunContext.get()):
        yield
        return
    from prefect.concurrency.sync import concurrency

    name = training_limit_name()
    _ensure_training_limit(name, cores())
    with concurrency(
        name,
        occupy=1,
        strict=True,  # the limit must exist (created above), never silently no limit
        lease_duration=TRAINING_LEASE_S,
        raise_on_lease_renewal_failure=False,
    ):
        yield


def fan_out(
    task: Any,
    symbols: list[str],
    parameters: dict[str, Any],
    runner: Runner = "auto",
    workers: int | None = None,
) -> dict[str, Any]:
    """Run ``task(symbol, **parameters)`` for every symbol on the chosen runner; wait for all.

    Returns each symbol's final Prefect state (Completed or Failed; for ``deployments`` the
    final state of its flow run, also Crashed or Cancelled): one symbol failing, on any
    worker, never stops the others.

    A step still running after ``SYMBOL_TIMEOUT_S`` fails: the task's own timeout does it in
    the flow's process and in a process pool's; a Dask worker runs tasks in a thread, which
    Prefect cannot interrupt (it would warn so on every symbol), so there the task goes
    without one and this flow stops waiting at the deadline, reporting the symbol failed.
    """
    from candlecast.settings import get_settings
    from tasks.logs import run_logger

    address = get_settings().dask_address
    kind, count = resolve_runner(runner, len(symbols), workers, address)
    if kind == "deployments":
        run_logger().info("%d symbols as flow runs of %s", len(symbols), SYMBOL_DEPLOYMENT)
        return run_deployments(symbols, parameters)
    where = f"Dask at {address}" if kind == "dask" and address else kind
    run_logger().info(
        "%d symbols on %s (%d workers, %d TensorFlow threads each)",
        len(symbols),
        where,
        count,
        threads_per_worker(count) if kind != "sequential" else cores(),
    )
    if kind == "sequential":
        return {s: task(s, **parameters, return_state=True) for s in symbols}
    with contextlib.ExitStack() as stack:
        if kind == "dask":
            import dask
            import distributed  # noqa: F401 - its config defaults first: leaving the set
            # below deletes every key that it created, a whole "distributed" section included

            # read by the local cluster's workers when they start
            stack.enter_context(dask.config.set(DASK_WORKER_CONFIG))
            task = task.with_options()  # a copy, without a timeout: the deadline below instead
            task.timeout_seconds = None  # (with_options takes None for "unchanged")
        pool = stack.enter_context(task_runner(kind, count, address))
        futures = {s: pool.submit(task, {"symbol": s, **parameters}) for s in symbols}
        deadline = time.monotonic() + SYMBOL_TIMEOUT_S
        for future in futures.values():
            future.wait(max(0.0, deadline - time.monotonic()) if kind == "dask" else None)
        return {s: _final(s, future.state) for s, future in futures.items()}


def _final(symbol: str, state: State) -> State:
    """``state`` if final, else Failed: the flow stopped waiting at the deadline."""
    from prefect.states import Failed

    if state.is_final():
        return state
    return Failed(message=f"{symbol}: still {state.name} after {SYMBOL_TIMEOUT_S:.0f} s")


def run_deployments(
    symbols: list[str],
    parameters: dict[str, Any],
    deployment: str = SYMBOL_DEPLOYMENT,
    wait_s: float = DEPLOYMENT_WAIT_S,
    start_warning_s: float = DEPLOYMENT_START_WARNING_S,
) -> dict[str, State]:
    """Start a flow run of ``deployment`` for every symbol, all before waiting on any, then
    wait for each one's final state.

    Each run goes to whichever worker of the deployment's work pool picks it up, and shows as
    a subflow of the calling flow run. A run whose machine died ends Crashed once its
    heartbeats stop, where ``candlecast detect-crashes`` set that up (``candlecast.crashes``).
    Runs that no worker has taken after ``start_warning_s`` are named in one warning (no
    worker polls the pool, or none has room: ``--limit`` counts this waiting run too); one
    still not final after ``wait_s`` is reported failed and left as it is.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Failed

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_deployment_by_name(deployment).work_pool_name
        except ObjectNotFound:
            raise LookupError(
                f"no deployment {deployment} on the Prefect server: register prefect.yaml's "
                "deployments with `prefect deploy --all`"
            ) from None
        runs: dict[str, UUID] = {
            s: run_deployment(deployment, parameters={"symbol": s, **parameters}, timeout=0).id
            for s in symbols
        }
        final: dict[UUID, State] = {}
        began = time.monotonic()
        warn_at: float | None = began + start_warning_s
        while len(final) < len(runs) and time.monotonic() < began + wait_s:
            waiting = FlowRunFilterId(any_=[i for i in runs.values() if i not in final])
            flow_runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=waiting))
            for flow_run in flow_runs:
                if flow_run.state is not None and flow_run.state.is_final():
                    final[flow_run.id] = flow_run.state
            if warn_at is not None and time.monotonic() >= warn_at:
                warn_at = None
                _warn_unstarted(runs, flow_runs, start_warning_s, pool)
            if len(final) < len(runs):
                time.sleep(DEPLOYMENT_POLL_S)
    late = f"its flow run was not final after {wait_s:.0f} s"
    return {s: final.get(i) or Failed(message=f"{late} ({i})") for s, i in runs.items()}


def _warn_unstarted(
    runs: dict[str, UUID], flow_runs: list[Any], after_s: float, pool: str | None
) -> None:
    """One warning naming the symbols whose flow runs (``flow_runs``, read just now) are
    still Scheduled: no worker of ``pool`` has taken them."""
    from tasks.logs import run_logger

    unstarted = {r.id for r in flow_runs if r.state is not None and r.state.is_scheduled()}
    if not unstarted:
        return
    run_logger().warning(
        "%d of %d symbol flow runs not started after %.0f s (%s): no worker of work pool %s "
        "has taken them; is one polling it, with room beside this run (`prefect worker start "
        "--limit` counts this run too)?",
        len(unstarted),
        len(runs),
        after_s,
        ", ".join(s for s, i in runs.items() if i in unstarted),
        pool,
    )
