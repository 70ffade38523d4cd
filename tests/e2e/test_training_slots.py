"""The host's training slots across a Prefect server restart and a holder that dies, on a
server set up as docs/scaling.md "Several machines" step 2 says (leases on disk)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tasks.training_slots import TRAINING_LEASE_S, training_limit_name
from tests.e2e.harness import (
    PrefectServer,
    Process,
    clean_env,
    free_port,
    poll,
    prefect_metadata_database,
    start,
    start_prefect_server,
)

# A flow that takes a training slot as a symbol's training does, says so with a file, and
# gives it back once another file appears.
HOLDER = """
import sys, time
from pathlib import Path
from prefect import flow
from tasks.training_slots import training_slot

@flow
def hold(flag: str) -> str:
    with training_slot():
        Path(flag + ".held").touch()
        while not Path(flag + ".go").exists():
            time.sleep(0.1)
    return "gave the slot back"

print(hold(sys.argv[1]))
"""
REPOSSESSOR_S = 15.0  # how often the server looks for expired leases (Prefect's default)


def _active_slots(server: PrefectServer) -> int | None:
    response = httpx.get(f"{server.api_url}/v2/concurrency_limits/{training_limit_name()}")
    return response.json()["active_slots"] if response.status_code == 200 else None


def _holder(server: PrefectServer, flag: Path) -> Process:
    env = clean_env(
        PREFECT_API_URL=server.api_url,
        PREFECT_HOME=str(flag.parent / f"{flag.name}-home"),
        DO_NOT_TRACK="1",
    )
    return start(
        f"holder {flag.name}",
        [sys.executable, "-c", HOLDER, str(flag)],
        env,
        flag.parent / f"{flag.name}.log",
    )


def _until(condition: Callable[[], bool], deadline_s: float, what: str, watched: Process) -> None:
    poll(lambda: True if condition() else None, deadline_s, what, watched, 0.5)


@pytest.mark.slow
def test_a_training_slot_outlives_a_server_restart_and_a_dead_holders_slot_comes_back(
    tmp_path: Path,
) -> None:
    home, port = tmp_path / "server", free_port()
    home.mkdir()
    with prefect_metadata_database(home) as database_url:
        server = start_prefect_server(home, port, database_url, tmp_path / "server-1.log")
        try:
            # a training holds a slot while the server restarts
            flag = tmp_path / "restart"
            holder = _holder(server, flag)
            try:
                _until(lambda: (flag.parent / "restart.held").exists(), 120, "a slot", holder)
                assert _active_slots(server) == 1
                leases = home / "home" / "concurrency_leases"  # the server's, on disk
                assert [p.name for p in leases.glob("*.json") if p.name != "expirations.json"]
                server.process.stop()
                server = start_prefect_server(home, port, database_url, tmp_path / "server-2.log")
                assert _active_slots(server) == 1  # the slot and its lease are still there
                (flag.parent / "restart.go").touch()
                assert holder.exited(120), holder.tail()
            finally:
                holder.stop()
            assert holder.popen.returncode == 0, holder.tail()
            log = holder.log.read_text()
            assert "gave the slot back" in log
            assert "keeps concurrency leases in memory" not in log
            assert _active_slots(server) == 0  # given back to the restarted server

            # a holder killed while training: its slot comes back once its lease runs out
            flag = tmp_path / "killed"
            holder = _holder(server, flag)
            try:
                _until(lambda: (flag.parent / "killed.held").exists(), 120, "a slot", holder)
                assert _active_slots(server) == 1
                os.killpg(holder.popen.pid, signal.SIGKILL)
                assert holder.exited(10)
            finally:
                holder.stop()
            back_within = TRAINING_LEASE_S + REPOSSESSOR_S + 30.0
            _until(lambda: _active_slots(server) == 0, back_within, "the slot back", server.process)
        finally:
            server.process.stop()
