"""One flow run of the ``symbol`` deployment per symbol, run by whichever Prefect worker of its
work pool picks it up, and the wait for their final states."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

SYMBOL_DEPLOYMENT = "forecast-symbol/symbol"  # flow/deployment, as prefect.yaml registers it
DEPLOYMENT_POLL_S = 2.0  # how often the parent reads its symbol flow runs' states
DEPLOYMENT_WAIT_S = 6 * 3600.0  # a symbol flow run not final by then is reported failed
DEPLOYMENT_START_WARNING_S = 600.0  # symbol flow runs no worker took by then: warned, once


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
