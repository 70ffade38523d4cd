"""Preload for the scheduler of a standing Dask cluster.

    dask scheduler --preload candlecast.dask_scheduler

Dask's scheduler unpickles every task graph a client sends it, and a candlecast symbol's task
names the pipeline's modules: the task itself (``tasks.daily.forecast_symbol``) and the flow
in the context Prefect sends with it (``flows.daily.daily_forecast``). Without this preload the
scheduler imports them when the first symbol arrives, so the first flow run after it starts
waits for that (docs/scaling.md), and a scheduler started from an
environment without candlecast fails every symbol with Dask's "Error during deserialization of
the task graph". With it the scheduler imports them as it starts, and such an environment
fails there, at once. TensorFlow is not among them: the scheduler never runs a task.
"""

from __future__ import annotations

from typing import Any


def dask_setup(scheduler: Any) -> None:
    """Dask's preload hook, called in the scheduler process before it accepts clients."""
    import flows.daily  # noqa: F401 - the import is the point
