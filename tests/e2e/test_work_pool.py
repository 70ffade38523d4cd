"""The daily fan-out as one flow run per symbol on a Prefect work pool, as README "Scaling out"
sets it up: the real server, a ``process`` work pool, prefect.yaml's deployments registered
with ``prefect deploy --all``, two ``prefect worker start`` processes (each with its own
PREFECT_HOME and data folder, as on two machines) on one PostgreSQL database, a shared result
storage folder, and a mirror of three learnable symbols; a fourth symbol has no file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import select

from candlecast.serve import PREFECT_YAML, deployments
from db.schema import Forecast, ModelVersion
from db.session import session_factory
from tasks.parallel import SYMBOL_DEPLOYMENT
from tests.conftest import wavy_cdd_csv
from tests.e2e.harness import (
    BIN,
    ROOT,
    SERVE_STARTUP_S,
    PrefectServer,
    Process,
    clean_env,
    poll,
    start,
)

POOL = "candlecast"  # prefect.yaml's work pool
SYMBOLS = ["WAVEUSDT", "WAVFUSDT", "WAVGUSDT"]
MISSING = "NOPEUSDT"  # no file in the mirror: its download fails
WORKERS = ("w1", "w2")
CLI_DEADLINE_S = 120.0
# five flow runs (the parent and four symbols), each a process importing Prefect, three of
# them TensorFlow, on two workers of a small machine
POOL_RUN_DEADLINE_S = 420.0


def test_prefect_yaml_declares_the_symbol_deployment_that_runner_deployments_starts() -> None:
    spec = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    flow_name, _, name = SYMBOL_DEPLOYMENT.partition("/")
    entry = spec[name]
    assert entry["work_pool"]["name"] == spec["daily"]["work_pool"]["name"] == POOL
    assert "schedules" not in entry and "concurrency_limit" not in entry
    (served,) = deployments(names=[name], parameters={"preset": "tiny", "horizon": 2})
    assert served.flow_name == flow_name and not served.schedules
    assert served.parameters == {**entry["parameters"], "preset": "tiny", "horizon": 2}


def _prefect(args: list[str], env: dict[str, str]) -> None:
    """Run a ``prefect`` command in the repository root to its end; fail with its output."""
    done = subprocess.run(
        [str(BIN / "prefect"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE_S,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"prefect {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )


@pytest.fixture
def pool_workers(
    prefect_server: PrefectServer,
    prefect_client: SyncPrefectClient,
    postgres_db: str,
    tmp_path: Path,
) -> Iterator[list[Process]]:
    """The ``candlecast`` process pool with prefect.yaml deployed to it, and two workers
    polling it, each allowed two flow runs at once."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for symbol in SYMBOLS:
        (mirror / f"Binance_{symbol}_d.csv").write_bytes(wavy_cdd_csv(symbol))
    cli = clean_env(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(tmp_path / "cli-home"),
        PREFECT_CLI_PROMPT="false",
        DO_NOT_TRACK="1",
    )
    _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], cli)
    _prefect(["deploy", "--all"], cli)
    workers = []
    try:
        for name in WORKERS:
            env = clean_env(
                PREFECT_API_URL=prefect_server.api_url,
                PREFECT_HOME=str(tmp_path / name / "prefect-home"),
                PREFECT_WORKER_QUERY_SECONDS="1",
                PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"),  # shared
                CANDLECAST_HOME=str(ROOT),
                CANDLECAST_DATABASE_URL=postgres_db,
                CANDLECAST_CDD_BASE_URL=str(mirror),
                CANDLECAST_DATA_DIR=str(tmp_path / name / "data"),
                CANDLECAST_HTTP_BACKOFF_S="0",
                DO_NOT_TRACK="1",
            )
            args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL]
            args += ["--name", name, "--limit", "2"]
            workers.append(start(f"worker {name}", args, env, tmp_path / f"{name}.log"))
        for name, worker in zip(WORKERS, workers, strict=True):
            poll(
                lambda name=name: _registered(prefect_client, name),
                SERVE_STARTUP_S,
                f"worker {name} on pool {POOL}",
                worker,
                0.5,
            )
        yield workers
    finally:
        for worker in workers:
            worker.stop(settle_s=10.0)


def _registered(client: SyncPrefectClient, name: str) -> bool | None:
    """True once the worker ``name`` has sent the pool its first heartbeat."""
    return True if name in {w.name for w in client.read_workers_for_work_pool(POOL)} else None


def _logs(workers: list[Process]) -> str:
    return "\n".join(f"--- {w.name} log (tail):\n{w.tail(3000)}" for w in workers)


def _final(client: SyncPrefectClient, flow_run_id: UUID) -> FlowRun | None:
    flow_run = client.read_flow_run(flow_run_id)
    return flow_run if flow_run.state is not None and flow_run.state.is_final() else None


@pytest.mark.slow
@pytest.mark.postgres
def test_each_symbol_runs_as_its_own_flow_run_on_two_workers_despite_a_failing_one(
    pool_workers: list[Process], prefect_client: SyncPrefectClient, postgres_db: str
) -> None:
    daily = prefect_client.read_deployment_by_name("daily-forecast/daily")
    symbol_deployment = prefect_client.read_deployment_by_name(SYMBOL_DEPLOYMENT)
    assert daily.work_pool_name == symbol_deployment.work_pool_name == POOL
    parameters = {"symbols": [*SYMBOLS, MISSING], "preset": "tiny", "horizon": 2}
    created = prefect_client.create_flow_run_from_deployment(
        daily.id, parameters={**parameters, "runner": "deployments"}
    )
    parent = poll(
        lambda: _final(prefect_client, created.id),
        POOL_RUN_DEADLINE_S,
        f"final state of the daily flow run {created.id}",
        pool_workers[0],
        1.0,
    )

    # the parent ends Failed naming the failing symbol only
    assert parent.state is not None and parent.state.is_failed(), _logs(pool_workers)
    message = parent.state.message or ""
    assert message.startswith(f"{MISSING}: ") and not any(s in message for s in SYMBOLS)

    # one flow run of the symbol deployment per symbol, each a subflow of the parent
    children = prefect_client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[created.id])
        )
    )
    runs = {run.parameters["symbol"]: run for run in children}
    assert len(children) == len(runs) == 4 and set(runs) == {*SYMBOLS, MISSING}
    assert {run.deployment_id for run in children} == {symbol_deployment.id}
    completed = {s for s, run in runs.items() if run.state and run.state.is_completed()}
    assert completed == set(SYMBOLS), _logs(pool_workers)
    failed = runs[MISSING].state
    assert failed is not None and failed.is_failed() and MISSING in (failed.message or "")
    # each worker ran some of them (two runs at most at once each, the parent holding one)
    assert {run.labels.get("prefect.worker.name") for run in children} == set(WORKERS)

    # every good symbol has a version and forecasts in PostgreSQL, written by its own run
    with session_factory(postgres_db)() as session:
        versions = set(session.execute(select(ModelVersion.symbol, ModelVersion.flow_run_id)))
        forecasts = set(session.execute(select(Forecast.symbol, Forecast.flow_run_id)))
    expected = {(s, str(runs[s].id)) for s in SYMBOLS}
    assert versions == expected and forecasts == expected

    # the parent's report holds each symbol's outcome, read from the shared result storage
    (summary,) = prefect_client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-summary"])),
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[created.id])),
    )
    lines = str(summary.data).splitlines()
    rows = {row.split("|")[1].strip(): row for row in lines if row.startswith("| ")}
    assert all("| retrain | v1 (" in rows[s] for s in SYMBOLS), summary.data
    assert "| **failed** |" in rows[MISSING]
