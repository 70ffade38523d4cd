"""Preload for the workers of a standing Dask cluster.

    dask worker tcp://scheduler:8786 --nworkers $(nproc) --nthreads 1 \
        --preload candlecast.dask_worker

At worker start, before any task: sizes TensorFlow's and BLAS's thread pools to the worker's
``--nthreads`` (one process per core and one thread each is the layout that trains fastest
here: bench/daily_run.py), imports TensorFlow and the daily pipeline, and trains a throwaway
``default`` model (``tasks.train.warm_up``), so the first symbol a daily run sends to the
worker waits neither for imports nor for TensorFlow's first-call set-up; then it takes what
is alive out of the garbage collector's full passes (``tasks.threads.freeze_heap``). It
also stops the worker's statistical profiler (``tasks.runners.DASK_WORKER_CONFIG`` says
why).
"""

from __future__ import annotations

import logging
from typing import Any


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, called in the worker process before it accepts tasks."""
    from tasks.runners import PROFILER_CALLBACKS

    for name in PROFILER_CALLBACKS:  # registered by Worker.__init__, started after preloads
        worker.periodic_callbacks.pop(name, None)
    prepare_worker(max(1, worker.state.nthreads))


def prepare_worker(threads: int) -> None:
    """Make this process a long-lived worker: TensorFlow's and BLAS's pools sized to
    ``threads``, the daily pipeline imported, TensorFlow's first-call costs paid
    (``tasks.train.warm_up``). Also the initializer of bench/daily_run.py's process pool."""
    from tasks.threads import freeze_heap, limit_threads

    limit_threads(threads)
    import tasks.daily  # noqa: F401 - the import is the point
    from models.presets import preset
    from tasks.train import warm_up

    seconds = warm_up(preset("default"))
    freeze_heap()  # what is alive now lives as long as the worker
    logging.getLogger("candlecast").info("worker warmed up in %.1f s", seconds)
