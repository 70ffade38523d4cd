"""The candlecast command line, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from candlecast.cli import app
from candlecast.core.settings import Settings, get_settings
from db.schema import Forecast
from db.session import session_factory

runner = CliRunner()


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CANDLECAST_DATABASE_URL", settings.sqlalchemy_url())
    monkeypatch.setenv("CANDLECAST_CDD_BASE_URL", settings.cdd_base_url)
    monkeypatch.setenv("CANDLECAST_HTTP_BACKOFF_S", "0")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_ingest_prints_one_line_per_symbol_then_nothing_new(env: Settings) -> None:
    first = runner.invoke(app, ["ingest", "--symbol", "ETHUSDT", "--symbol", "ADAUSDT"])
    assert first.exit_code == 0, first.output
    lines = first.output.strip().splitlines()
    assert lines[0].startswith("Binance ETHUSDT d: 1409 rows parsed, 1407 inserted, 0 updated")
    assert lines[1].startswith("Binance ADAUSDT d: 1165 rows parsed, 1164 inserted, 0 updated")
    again = runner.invoke(app, ["ingest", "-s", "ETHUSDT", "-s", "ADAUSDT"])
    assert again.exit_code == 0
    assert all(" 0 inserted, 0 updated" in line for line in again.output.strip().splitlines())


def test_failing_symbol_gives_one_line_error_and_others_still_run(env: Settings) -> None:
    result = runner.invoke(app, ["ingest", "-s", "NOPEUSDT", "-s", "BNBUSDT"])
    assert result.exit_code == 1
    assert "error: NOPEUSDT: no such file in the mirror" in result.stderr
    assert "Traceback" not in result.output
    assert "Binance BNBUSDT d: 1272 rows parsed, 1271 inserted" in result.stdout


@pytest.mark.slow
def test_run_prints_the_forecasts_it_made_and_names_the_symbol_that_failed(
    prefect_env: Settings,
) -> None:
    args = ["run", "-s", "WAVEUSDT", "-s", "NOPEUSDT", "--preset", "tiny", "--horizon", "2"]
    result = runner.invoke(app, [*args, "--runner", "sequential"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: NOPEUSDT: HTTP 404 from http://")
    table = result.stdout.split("predicted_close", 1)[1].splitlines()
    rows = [line for line in table if "WAVEUSDT" in line]
    assert len(rows) == 2 and not any("NOPEUSDT" in line for line in table)
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        stored = session.scalars(select(Forecast.predicted_close)).all()
    assert len(stored) == 2 and all(f"{p:.2f}"[:4] in result.stdout for p in stored)
    assert "WAVEUSDT: first version to beat persistence" in result.stdout  # the decision
    again = runner.invoke(app, ["run", "-s", "WAVEUSDT", "--preset", "tiny", "--horizon", "2"])
    assert again.exit_code == 0
    assert "WAVEUSDT: no new candle since v1 (2025-10-14): kept v1" in again.stdout


def test_run_refuses_an_unknown_runner_before_anything_runs(env: Settings) -> None:
    result = runner.invoke(app, ["run", "--runner", "threads"])
    assert result.exit_code == 2 and "threads" in result.stderr
    with session_factory(env.sqlalchemy_url())() as session:
        assert session.scalar(select(func.count()).select_from(Forecast)) == 0


@pytest.mark.parametrize("bad", ["BTC'; DROP TABLE candles;--", "../../etc/passwd", "БТК"])
def test_hostile_symbols_are_refused(env: Settings, bad: str) -> None:
    result = runner.invoke(app, ["ingest", "--symbol", bad])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid symbol")


def test_db_upgrade_masks_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CANDLECAST_DATABASE_URL", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_console_script_help_for_each_command(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("candlecast")
    for args in (
        ["--help"],
        ["ingest", "--help"],
        ["db", "upgrade", "--help"],
        ["detect-crashes", "--help"],
    ):
        out = subprocess.run(
            [str(script), *args],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"CANDLECAST_DATA_DIR": str(tmp_path)},
        )
        assert "Usage: candlecast" in out.stdout


def test_db_upgrade_then_ingest_in_a_real_process(tmp_path: Path, cdd_dir: Path) -> None:
    script = Path(sys.executable).with_name("candlecast")
    env = os.environ | {
        "CANDLECAST_DATA_DIR": str(tmp_path),
        "CANDLECAST_CDD_BASE_URL": str(cdd_dir),
    }
    env.pop("CANDLECAST_DATABASE_URL", None)
    upgraded = subprocess.run(
        [str(script), "db", "upgrade"], capture_output=True, text=True, env=env
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"sqlite:///{tmp_path}/candlecast.sqlite is at revision" in upgraded.stdout
    ingested = subprocess.run([str(script), "ingest"], capture_output=True, text=True, env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.startswith("Binance BTCUSDT d: 2981 rows parsed, 2981 inserted")


def _first_run(tmp_path: Path, mirror_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`make run`'s path on a new machine: no Prefect server configured and an empty
    PREFECT_HOME, so the run starts a temporary server whose first start builds its database."""
    script = Path(sys.executable).with_name("candlecast")
    env = os.environ | {
        "CANDLECAST_DATA_DIR": str(tmp_path),
        "CANDLECAST_CDD_BASE_URL": str(mirror_dir),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    for name in (
        "CANDLECAST_DATABASE_URL",
        "PREFECT_API_URL",
        "PREFECT_SERVER_ANALYTICS_ENABLED",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    ):
        env.pop(name, None)
    env |= extra
    subprocess.run([str(script), "db", "upgrade"], capture_output=True, env=env, check=True)
    args = ["run", "-s", "WAVEUSDT", "--preset", "tiny", "--horizon", "2"]
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env)


@contextmanager
def busy_cores(count: int, limit_s: float = 600) -> Iterator[None]:
    """``count`` processes spinning on a core each, stopped on leaving (or after ``limit_s``)."""
    spin = f"import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end: pass"
    loops = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_run_on_a_temporary_prefect_server_prints_no_errors(
    tmp_path: Path, mirror_dir: Path
) -> None:
    """The temporary server's telemetry would log an ERROR on this offline machine (and
    sometimes a traceback). That server keeps its leases in memory and goes with the run: no
    warning about them."""
    done = _first_run(tmp_path, mirror_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting temporary server" in done.stderr  # the path this test is about
    assert "WAVEUSDT  1" in done.stdout
    prefect_errors = [
        line for line in done.stderr.splitlines() if "| ERROR" in line or "Traceback" in line
    ]
    assert prefect_errors == []
    assert "concurrency leases" not in done.stderr


@pytest.mark.slow
def test_the_first_run_on_a_new_machine_works_with_every_core_busy(
    tmp_path: Path, mirror_dir: Path
) -> None:
    """Two spinning processes a core: Prefect's 20 s start-up limit failed such first runs (its
    database is built then)."""
    with busy_cores(2 * (os.cpu_count() or 2)):
        done = _first_run(tmp_path, mirror_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "WAVEUSDT  1" in done.stdout


def test_a_temporary_server_that_cannot_start_is_one_line_saying_what_to_do(
    tmp_path: Path, mirror_dir: Path
) -> None:
    done = _first_run(tmp_path, mirror_dir, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    assert errors[0].startswith("error: the temporary Prefect server did not start within 1 s")
    assert "PREFECT_API_URL" in errors[0]


@pytest.mark.parametrize(
    ("unset", "args", "refusal"),
    [
        ("api.url", [], "PREFECT_API_URL is unset"),
        ("flows.heartbeat_frequency", [], "flow run heartbeats are off"),
        (None, ["--within", "180"], "longer than the heartbeat interval (180 s"),
    ],
)
def test_detect_crashes_refuses_what_could_not_work(
    unset: str | None, args: list[str], refusal: str
) -> None:
    """Refused before any request (no server answers at that API URL): one line naming the
    setting to change."""
    from prefect.settings import temporary_settings

    updates = {"api.url": "http://127.0.0.1:9/api", "flows.heartbeat_frequency": 180}
    if unset is not None:
        updates[unset] = None
    with temporary_settings(updates=updates):
        result = runner.invoke(app, ["detect-crashes", *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and refusal in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
