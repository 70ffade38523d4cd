"""The daily fan-out as one flow run per symbol on a Prefect work pool, as docs/scaling.md
sets it up: the real server, a ``process`` work pool, prefect.yaml's deployments registered
with ``prefect deploy --all``, two ``prefect worker start`` processes (each with its own
PREFECT_HOME and data folder, as on two machines) on one PostgreSQL database, a shared result
storage folder, and a mirror of three learnable symbols; a fourth symbol has no file.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from sqlalchemy import select

from candlecast.crashes import AUTOMATION, FLOWS
from candlecast.serve import PREFECT_YAML, deployments
from db.schema import Forecast, ModelVersion
from db.session import session_factory
from tasks.deployments import DEPLOYMENT_POLL_S, SYMBOL_DEPLOYMENT, run_deployments
from tests.conftest import wavy_cdd_csv
from tests.e2e.harness import (
    BIN,
    ROOT,
    RUN_DEADLINE_S,
    SERVE_STARTUP_S,
    PrefectServer,
    Process,
    clean_env,
    poll,
    start,
)
from tests.rawserver import RawServer, never_answer

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


def _deploy(api_url: str, tmp_path: Path) -> None:
    """The ``candlecast`` process pool, with prefect.yaml's deployments registered on it."""
    cli = clean_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(tmp_path / "cli-home"),
        PREFECT_CLI_PROMPT="false",
        DO_NOT_TRACK="1",
    )
    _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], cli)
    _prefect(["deploy", "--all"], cli)


def _start_worker(
    name: str, api_url: str, database_url: str, mirror: str, tmp_path: Path, **variables: str
) -> Process:
    """``prefect worker start`` on the pool as README step 4 runs it on a machine of its own
    (its own PREFECT_HOME and data folder), allowed two flow runs at once."""
    env = clean_env(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(tmp_path / name / "prefect-home"),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"),  # shared
        CANDLECAST_HOME=str(ROOT),
        CANDLECAST_DATABASE_URL=database_url,
        CANDLECAST_CDD_BASE_URL=mirror,
        CANDLECAST_DATA_DIR=str(tmp_path / name / "data"),
        CANDLECAST_HTTP_BACKOFF_S="0",
        DO_NOT_TRACK="1",
        **variables,
    )
    args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL]
    args += ["--name", name, "--limit", "2"]
    return start(f"worker {name}", args, env, tmp_path / f"{name}.log")


def _wait_registered(client: SyncPrefectClient, name: str, worker: Process) -> None:
    poll(
        lambda: _registered(client, name),
        SERVE_STARTUP_S,
        f"worker {name} on pool {POOL}",
        worker,
        0.5,
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
    _deploy(prefect_server.api_url, tmp_path)
    workers = []
    try:
        for name in WORKERS:
            worker = _start_worker(name, prefect_server.api_url, postgres_db, str(mirror), tmp_path)
            workers.append(worker)
        for name, worker in zip(WORKERS, workers, strict=True):
            _wait_registered(prefect_client, name, worker)
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
    assert all("| retrain | v1 " in rows[s] for s in SYMBOLS), summary.data
    assert "| **failed** |" in rows[MISSING]


HEARTBEAT_S = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY's smallest value
CRASH_WITHIN_S = 45  # the test's wait; `detect-crashes` waits 3 heartbeat intervals by default


@pytest.fixture
def crash_detection(
    prefect_server: PrefectServer, prefect_client: SyncPrefectClient, tmp_path: Path
) -> Iterator[list[str]]:
    """``candlecast detect-crashes`` run as README step 3 runs it, then again with
    ``--within``; what each printed. The automation is deleted afterwards: the session's other
    tests send heartbeats every 180 s (Prefect's default) and it would set their longer runs
    Crashed."""
    env = clean_env(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(tmp_path / "cli-home"),
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_S),
        DO_NOT_TRACK="1",
    )
    printed = []
    try:
        for within in ([], ["--within", str(CRASH_WITHIN_S)]):
            done = subprocess.run(
                [str(BIN / "candlecast"), "detect-crashes", *within],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=CLI_DEADLINE_S,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            printed.append(done.stdout)
        yield printed
    finally:
        for automation in prefect_client.read_automations_by_name(AUTOMATION):
            prefect_client.delete_automation(automation.id)


def _heartbeats(api_url: str, flow_run_id: UUID) -> int | None:
    """How many heartbeat events the server holds for the flow run (None while none)."""
    query = {
        "event": {"name": ["prefect.flow-run.heartbeat"]},
        "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
    }
    response = httpx.post(f"{api_url}/events/filter", json={"filter": query, "limit": 50})
    response.raise_for_status()
    return len(response.json()["events"]) or None


@pytest.mark.slow
@pytest.mark.postgres
def test_a_symbol_run_whose_machine_dies_is_set_crashed_and_its_parent_names_it(
    crash_detection: list[str],
    prefect_server: PrefectServer,
    prefect_client: SyncPrefectClient,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    created, updated = crash_detection  # 3 heartbeat intervals by default, then --within
    flows = ", ".join(FLOWS)
    assert f"created: runs of {flows} with no heartbeat for {3 * HEARTBEAT_S} s" in created
    assert f"updated: runs of {flows} with no heartbeat for {CRASH_WITHIN_S} s" in updated
    assert len(prefect_client.read_automations_by_name(AUTOMATION)) == 1
    stalled = RawServer(never_answer)  # the CDD mirror answers nothing: the run stays in fetch
    _deploy(prefect_server.api_url, tmp_path)
    worker = _start_worker(
        "doomed",
        prefect_server.api_url,
        postgres_db,
        stalled.url,
        tmp_path,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT_S),
        CANDLECAST_HTTP_READ_TIMEOUT_S="3600",
    )
    try:
        _wait_registered(prefect_client, "doomed", worker)
        # the parent's side, as `daily` runs it with runner="deployments": in a thread of this
        # process with this test's Prefect settings (a daemon: if the run never ends, the
        # thread must not hold pytest up at exit)
        parameters = {"exchange": "Binance", "mode": "auto", "preset": "tiny", "horizon": 2}
        final: dict[str, State] = {}
        parent = threading.Thread(
            target=contextvars.copy_context().run,
            args=(lambda: final.update(run_deployments([SYMBOLS[0]], parameters)),),
            daemon=True,
        )
        parent.start()
        (child,) = poll(
            lambda: _symbol_runs(prefect_client, StateType.RUNNING),
            POOL_RUN_DEADLINE_S,
            "a running symbol flow run",
            worker,
            0.5,
        )
        poll(lambda: stalled.connections or None, RUN_DEADLINE_S, "its download", worker, 0.5)
        poll(
            lambda: _heartbeats(prefect_server.api_url, child.id),
            RUN_DEADLINE_S,
            "its first heartbeat",
            worker,
            0.5,
        )
        # the machine dies: the worker and its flow run, with no word to the server
        flow_runs = worker.children()
        os.killpg(worker.popen.pid, signal.SIGKILL)
        for pid in flow_runs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        assert worker.exited(10.0)
        crashed = poll(
            lambda: _final(prefect_client, child.id),
            CRASH_WITHIN_S + HEARTBEAT_S + 60.0,  # the last heartbeat, the wait, the service
            "final state of the dead flow run",
            prefect_server.process,
            1.0,
        )
        assert crashed.state is not None and crashed.state.is_crashed()
        message = f"no heartbeat for {CRASH_WITHIN_S} s: its machine or process stopped"
        assert crashed.state.message == message
        assert _heartbeats(prefect_server.api_url, child.id) == 1  # it died before the next
        # the parent no longer waits out DEPLOYMENT_WAIT_S: it has the Crashed state
        parent.join(DEPLOYMENT_POLL_S * 5)
        assert not parent.is_alive()
        assert list(final) == [SYMBOLS[0]] and final[SYMBOLS[0]].is_crashed()
        assert final[SYMBOLS[0]].message == message
    finally:
        worker.stop()
        stalled.close()


def _symbol_runs(client: SyncPrefectClient, state: StateType) -> list[FlowRun] | None:
    """The symbol deployment's flow runs in ``state`` (None while there are none)."""
    deployment = client.read_deployment_by_name(SYMBOL_DEPLOYMENT)
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state])),
        )
    )
    return runs or None


def test_symbol_runs_no_worker_takes_are_named_in_a_warning_then_reported_failed(
    prefect_server: PrefectServer,
    prefect_client: SyncPrefectClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _deploy(prefect_server.api_url, tmp_path)  # the pool, with no worker polling it
    parameters = {"preset": "tiny", "horizon": 2}
    wait_s = 3 * DEPLOYMENT_POLL_S
    try:
        with caplog.at_level(logging.WARNING, logger="candlecast"):
            states = run_deployments(
                [SYMBOLS[0]], parameters, wait_s=wait_s, start_warning_s=DEPLOYMENT_POLL_S
            )
    finally:  # no later test's worker may pick the run up
        for run in _symbol_runs(prefect_client, StateType.SCHEDULED) or []:
            prefect_client.delete_flow_run(run.id)
    (state,) = states.values()
    assert state.is_failed() and f"not final after {wait_s:.0f} s" in (state.message or "")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"1 of 1 symbol flow runs not started after 2 s ({SYMBOLS[0]})")
    assert f"no worker of work pool {POOL} has taken them" in warning
