"""How a process shares the machine's cores: TensorFlow's and BLAS's thread pools, and the
garbage collector's passes over what stays alive for the process's life."""

from __future__ import annotations

import gc
import os
from functools import cache

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

    With TensorFlow, Keras, pandas, matplotlib and Prefect loaded, a process holds hundreds of
    thousands of tracked objects, and each full collection walks them all, a cost the plots'
    many short-lived objects trigger often (docs/scaling.md). What is alive when the pipeline
    first runs (modules, TensorFlow's state, a worker's warm-up) lives as long as the process.
    Objects frozen here are still freed when their last reference goes; only a reference cycle
    among them that later becomes garbage stays, once, for the process's life.

    Whether it ran is the cache's to know, not ``gc.get_freeze_count()``, which walks the
    whole frozen list on every call.
    """
    gc.collect()
    gc.freeze()
