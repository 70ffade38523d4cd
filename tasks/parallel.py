"""Where the per-symbol steps run: in this process, in a local process pool, or on Dask.

- ``sequential``: one symbol after another in the flow's process (TensorFlow uses every core).
- ``processes``: Prefect's ``ProcessPoolTaskRunner``, one worker process per core by default,
  each with TensorFlow's thread pools cut to ``cores // workers`` so the machine is not
  oversubscribed.
- ``dask``: prefect-dask's ``DaskTaskRunner`` on the cluster at ``CANDLECAST_DASK_ADDRESS``,
  or on a local cluster of ``workers`` single-threaded worker processes when none is set.

On top of any runner, :func:`training_slot` takes a slot of the Prefect global concurrency
limit ``candlecast-training-<host>`` (as many slots as the host has cores), so several flow
runs or workers on one machine never train more models at once than it has cores for.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Literal

Runner = Literal["auto", "sequential", "processes", "dask"]
SEQUENTIAL_UP_TO_CORES = 2  # runner "auto" stays sequential on machines this small
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
) -> tuple[Literal["sequential", "processes", "dask"], int]:
    """The runner and the number of workers to use.

    ``auto``: Dask when a cluster address is configured; else a process per core when there
    is more than one symbol and more than ``SEQUENTIAL_UP_TO_CORES`` cores; else sequential.
    On 2 cores one TensorFlow training already keeps both busy, and the pool's start-up
    (spawning, importing TensorFlow and Prefect in each worker) cost more than it saved
    (bench/daily_run.py: 4 symbols 0.91x, next day 0.53x; README "Scaling out").
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

    Sets the environment variables for libraries not loaded yet, then configures TensorFlow
    itself (which must happen before it runs any operation: a no-op with a log line after).
    """
    os.environ.update(thread_environment(threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialized in this process: env vars applied
        import logging

        logging.getLogger("candlecast").info("TensorFlow already running; threads unchanged")


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
    the one that loses finds it created (Prefect's upsert is not atomic)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                limit = GlobalConcurrencyLimitCreate(name=name, limit=slots)
                client.create_global_concurrency_limit(limit)


@contextmanager
def training_slot() -> Iterator[None]:
    """Hold one of this host's training slots while training (inside a Prefect run).

    The limit is created on first use with one slot per core; an operator may change it
    (``prefect gcl update candlecast-training-<host> --limit N``) and the change is kept.
    Outside a Prefect run (CLI, tests, benchmarks calling ``.fn``) nothing is taken.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    if not (TaskRunContext.get() or FlowRunContext.get()):
        yield
        return
    from prefect.concurrency.sync import concurrency

    name = training_limit_name()
    _ensure_training_limit(name, cores())
    with concurrency(name, occupy=1, strict=True):
        yield


def fan_out(
    task: Any,
    symbols: list[str],
    parameters: dict[str, Any],
    runner: Runner = "auto",
    workers: int | None = None,
) -> dict[str, Any]:
    """Run ``task(symbol, **parameters)`` for every symbol on the chosen runner; wait for all.

    Returns each symbol's final Prefect state (Completed or Failed): one symbol failing, on
    any worker, never stops the others.
    """
    from candlecast.settings import get_settings
    from tasks.logs import run_logger

    address = get_settings().dask_address
    kind, count = resolve_runner(runner, len(symbols), workers, address)
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
    with task_runner(kind, count, address) as pool:
        futures = {s: pool.submit(task, {"symbol": s, **parameters}) for s in symbols}
        for future in futures.values():
            future.wait()
        return {s: future.state for s, future in futures.items()}
