"""Training slots: a Prefect global concurrency limit ``candlecast-training-<host>`` with as
many slots as the host has cores, so several flow runs or workers on one machine never train
more models at once than it has cores for."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from tasks.threads import cores

# A slot is a lease, renewed every 3/4 of it while the training runs; the shortest Prefect
# takes, so a dead holder's slot is free again after this plus the server's repossessor pass.
TRAINING_LEASE_S = 60.0
# Leases kept in the server's memory are lost on a restart, and the slot then stays counted
# for good (docs/scaling.md, "Several machines"); DISK_LEASE_STORAGE keeps them under PREFECT_HOME.
MEMORY_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.memory"
DISK_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


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
            "with PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=%s (docs/scaling.md)",
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
