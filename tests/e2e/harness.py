"""The subprocesses and waits of the end-to-end tests: a real Prefect server and
``candlecast serve`` as a user starts them, each in its own process group with one log file.

Every wait polls with a deadline and fails with the subprocess's log; nothing sleeps for
timing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tasks.training_slots import DISK_LEASE_STORAGE
from tests.conftest import postgres_unreachable, scratch_postgres_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVER_STARTUP_S = 120.0
SERVE_STARTUP_S = 90.0
RUN_DEADLINE_S = 240.0
# What a run of the served `daily` deployment does when nobody passes parameters (the UI's
# Quick run): small enough for a test, and WAVEUSDT is learnable, so forecasts are written.
SMALL_RUN = {"symbols": ["WAVEUSDT"], "preset": "tiny", "horizon": 2}

T = TypeVar("T")


@dataclass
class Process:
    """A subprocess in its own process group, its stdout and stderr in one log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    _log_file: IO[bytes]

    def tail(self, chars: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:] or "(empty log)"

    def exited(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for the process to end; True if it has."""
        try:
            self.popen.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def children(self) -> list[str]:
        """The pids of the process's children, from any of its threads (Linux /proc)."""
        pids = []
        for listing in Path(f"/proc/{self.popen.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread that has just ended
                pids += listing.read_text().split()
        return pids

    def stop(self, settle_s: float = 0.0) -> None:
        """Give children (flow runs finishing) up to ``settle_s`` to end, then SIGTERM the
        whole group and SIGKILL whatever is left of it after 15 s."""
        deadline = time.monotonic() + settle_s
        while self.children() and time.monotonic() < deadline:
            if self.exited(0.2):
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.exited(15.0)
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.exited(5.0)
        self._log_file.close()


def start(name: str, args: list[str], env: dict[str, str], log: Path) -> Process:
    """Start ``args`` in the repository root as the leader of a new process group."""
    log_file = log.open("wb")
    popen = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, popen, log, log_file)


def poll(
    check: Callable[[], T | None], deadline_s: float, what: str, process: Process, every_s: float
) -> T:
    """Call ``check`` until it returns something other than None, within ``deadline_s``.

    Between calls it waits on ``process`` (so a crash fails at once, with its log), never
    longer than ``every_s``.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        result = check()
        if result is not None:
            return result
        if process.exited(every_s):
            pytest.fail(
                f"{process.name} exited with {process.popen.returncode} while waiting for "
                f"{what}; its log:\n{process.tail()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {what} within {deadline_s:.0f} s; {process.name} log:\n{process.tail()}"
            )


def clean_env(**variables: str) -> dict[str, str]:
    """This environment without any PREFECT_* or CANDLECAST_* variable, plus ``variables``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CANDLECAST_"))}
    return {**kept, **variables}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrefectServer:
    """The running ``prefect server start``: ``url`` serves the UI, ``api_url`` the API."""

    url: str
    api_url: str
    process: Process


@contextmanager
def prefect_metadata_database(home: Path) -> Iterator[str]:
    """The Prefect server's own database: a scratch PostgreSQL database (asyncpg).

    On Prefect's default SQLite, a write that meets another one mid-transaction gets "database
    is locked" and the server answers 503; the UI does not retry, so a Quick run click made
    no flow run (CI, 2026-11-26; reproduced here with both cores busy). Where no PostgreSQL
    answers outside CI, a SQLite file keeps the end-to-end tests running, with that risk.
    """
    if postgres_unreachable() is not None and os.environ.get("CI") != "true":
        yield f"sqlite+aiosqlite:///{home / 'prefect.db'}"
        return
    with scratch_postgres_database("candlecast_e2e_prefect") as url:
        yield make_url(url).set(drivername="postgresql+asyncpg").render_as_string(False)


def _healthy(api_url: str) -> bool | None:
    try:
        response = httpx.get(f"{api_url}/health", timeout=2.0)
    except httpx.HTTPError:
        return None
    return True if response.status_code == 200 else None


def start_prefect_server(home: Path, port: int, database_url: str, log: Path) -> PrefectServer:
    """``prefect server start`` on 127.0.0.1:``port`` as README sets one up: its metadata in
    ``database_url``, its concurrency leases on disk under ``home``, the UI calling its API;
    returned once healthy. The same arguments again start it again on the same state."""
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        PREFECT_HOME=str(home / "home"),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=database_url,
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=DISK_LEASE_STORAGE,
        PREFECT_API_URL=f"{url}/api",
        PREFECT_UI_API_URL=f"{url}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT="false",
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",  # a 503 answered shows in the server log
        DO_NOT_TRACK="1",
    )
    args = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = start("prefect server", args, env, log)
    try:
        poll(lambda: _healthy(f"{url}/api"), SERVER_STARTUP_S, "healthy server", process, 0.5)
    except BaseException:
        process.stop()
        raise
    return PrefectServer(url, f"{url}/api", process)


@dataclass
class Served:
    """The running ``candlecast serve`` and the database its flow runs write to."""

    db_url: str
    process: Process


def wait_for_final_state(client: SyncPrefectClient, flow_run_id: UUID, process: Process) -> FlowRun:
    """The flow run once its state is final (Completed, Failed, Crashed, Cancelled)."""

    def final() -> FlowRun | None:
        flow_run = client.read_flow_run(flow_run_id)
        return flow_run if flow_run.state is not None and flow_run.state.is_final() else None

    return poll(final, RUN_DEADLINE_S, f"final state of flow run {flow_run_id}", process, 1.0)


def latest_forecasts(db_url: str, symbol: str) -> list[dict[str, Any]]:
    """The champion's latest forecasts of ``symbol``, read with plain SQL."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT symbol, version, horizon, predicted_close, flow_run_id "
                    "FROM latest_forecasts WHERE symbol = :symbol ORDER BY horizon"
                ),
                {"symbol": symbol},
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()
