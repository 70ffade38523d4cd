"""Where the per-symbol steps run: in this process, in a local process pool, on Dask, or as
flow runs of their own on a work pool.

- ``sequential``: one symbol after another in the flow's process (TensorFlow may use every core).
- ``processes``: Prefect's ``ProcessPoolTaskRunner``, one worker process per core by default,
  each with TensorFlow's thread pools cut to ``cores // workers`` so the machine is not
  oversubscribed.
- ``dask``: prefect-dask's ``DaskTaskRunner`` on the cluster at ``CANDLECAST_DASK_ADDRESS``,
  or on a local cluster of ``workers`` single-threaded worker processes when none is set.
- ``deployments``: one flow run of the ``symbol`` deployment per symbol
  (``tasks.deployments``); chosen explicitly, never by ``auto``.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal

from tasks.deployments import SYMBOL_DEPLOYMENT, run_deployments
from tasks.threads import cores, limit_threads, thread_environment, threads_per_worker

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

Runner = Literal["auto", "sequential", "processes", "dask", "deployments"]
SEQUENTIAL_UP_TO_CORES = 2  # runner "auto" stays sequential on machines this small
SYMBOL_TIMEOUT_S = 3 * 3600.0  # a symbol's step still running by then is failed
# Dask workers sample every running thread's stack for the dashboard's Profile page, which
# slows a Prefect task run's many Python frames (docs/scaling.md): the workers candlecast
# starts run without it, and the worker preload stops it in a standing cluster.
DASK_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
PROFILER_CALLBACKS = ("profile", "profile-cycle")  # the worker's periodic callbacks for it


def resolve_runner(
    runner: Runner, symbols: int, workers: int | None, dask_address: str | None
) -> tuple[Literal["sequential", "processes", "dask", "deployments"], int]:
    """The runner and the number of workers to use (for ``deployments``: the number of flow
    runs started at once, one per symbol; the work pool's workers decide where they run).

    ``auto``: Dask when a cluster address is configured; else a process per core when there
    is more than one symbol and more than ``SEQUENTIAL_UP_TO_CORES`` cores; else sequential.
    On 2 cores the pool's start-up (spawning, importing TensorFlow and Prefect in each worker)
    costs more than running the symbols side by side saves (docs/scaling.md).
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
    from candlecast.core.settings import get_settings
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
