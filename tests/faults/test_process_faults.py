"""Process faults: SIGKILL during training and while forecasts are being written, training
that diverges, two daily runs at once. Nothing half-written; the champion only changes to a
complete version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import registry
from db.schema import Candle, Forecast, ModelBlob, ModelVersion
from db.session import session_factory
from models import presets
from tasks.daily import forecast_symbol
from tests.conftest import settings_for, wavy_cdd_csv

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]

# The child runs the real daily step; the one function named by argv[4] is wrapped so that
# the child announces it has reached that point (a marker file) and then hangs there until
# the test kills it with SIGKILL. Nothing else is changed.
CHILD = """
import os, sys, threading, pathlib
os.environ["CANDLECAST_DATABASE_URL"], os.environ["CANDLECAST_CDD_BASE_URL"] = sys.argv[1:3]
marker, where = pathlib.Path(sys.argv[3]), sys.argv[4]
import db.forecasts, tasks.train
module, name = {"training": (tasks.train, "update_model"),
                "forecasts": (db.forecasts, "save_forecasts")}[where]
original = getattr(module, name)
def hang(*args, **kwargs):
    if where == "forecasts":
        original(*args, **kwargs)  # the INSERTs run inside the still-open transaction
    marker.write_text(where)
    threading.Event().wait()
setattr(module, name, hang)
from tasks.daily import forecast_symbol
forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=3)
"""


def state(url: str) -> dict[str, object]:
    with session_factory(url)() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        champion = registry.champion(session, "Binance", "WAVEUSDT", "d")
        return {
            "candles": count(Candle),
            "versions": count(ModelVersion),
            "blobs": count(ModelBlob),
            "forecasts": count(Forecast),
            "champion": champion.version if champion else None,
        }


@pytest.fixture
def next_day_mirror(tmp_path: Path) -> Path:
    """The WAVEUSDT file one day later: one more final candle."""
    mirror = tmp_path / "next-day"
    mirror.mkdir()
    (mirror / "Binance_WAVEUSDT_d.csv").write_bytes(wavy_cdd_csv(days=401, end="2025-10-15"))
    return mirror


def kill_when_reached(url: str, mirror: Path, where: str, tmp_path: Path) -> None:
    marker = tmp_path / f"{where}.marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(mirror), str(marker), where],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not marker.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"child never reached {where}: {child.communicate()[0].decode()[-3000:]}")
        time.sleep(0.05)  # polling for the marker, not timing anything
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.parametrize("where", ["training", "forecasts"])
def test_sigkill_loses_nothing_and_rerun_completes(
    db_url: str, mirror_dir: Path, next_day_mirror: Path, tmp_path: Path, where: str
) -> None:
    first = settings_for(db_url, str(mirror_dir), tmp_path)
    day1 = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=3, settings=first)
    assert day1.champion_version == 1
    before = state(db_url)
    kill_when_reached(db_url, next_day_mirror, where, tmp_path)
    after = state(db_url)
    assert after["candles"] == before["candles"] + 1  # the ingest had committed
    assert after["versions"] == after["blobs"]  # no version without its bytes
    assert after["forecasts"] == before["forecasts"]  # the killed transaction left nothing
    if where == "training":
        assert after["versions"] == before["versions"] and after["champion"] == 1
    else:  # the version was complete and committed before forecasting began
        assert after["versions"] == before["versions"] + 1
    rerun = forecast_symbol.fn(
        "WAVEUSDT",
        preset="tiny",
        horizon=3,
        settings=settings_for(db_url, str(next_day_mirror), tmp_path),
    )
    final = state(db_url)
    made = 1 if where == "training" else 0  # a complete version saw the new candle: kept
    assert final["versions"] == final["blobs"] == after["versions"] + made
    assert (rerun.action == "kept") == (made == 0)
    assert rerun.champion_version is not None and final["champion"] == rerun.champion_version
    with session_factory(db_url)() as session:
        as_of = session.scalars(
            select(Forecast.as_of).where(
                Forecast.version_id == registry.champion(session, "Binance", "WAVEUSDT", "d").id
            )
        ).all()
    assert max(as_of).date().isoformat() == "2025-10-15" and len(as_of) == len(set(as_of)) * 3


def test_diverging_training_is_rejected_and_champion_keeps_serving(
    db_url: str,
    mirror_dir: Path,
    next_day_mirror: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = settings_for(db_url, str(mirror_dir), tmp_path)
    assert forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, settings=first).promoted
    exploding = presets.preset("tiny").replace(learning_rate=1e30, clipping="none")
    monkeypatch.setitem(presets.PRESETS, "tiny", exploding)  # same name: a plain retrain
    before = state(db_url)
    outcome = forecast_symbol.fn(
        "WAVEUSDT",
        preset="tiny",
        horizon=2,
        mode="retrain",
        settings=settings_for(db_url, str(next_day_mirror), tmp_path),
    )
    assert outcome.action == "rejected" and outcome.version is None
    assert outcome.error and "training loss became" in outcome.error
    after = state(db_url)
    assert after["versions"] == before["versions"] and after["champion"] == 1
    assert outcome.champion_version == 1 and len(outcome.forecasts) == 2  # still served
    assert after["forecasts"] == before["forecasts"] + 2


# retrain, asked for: each run registers even when it sees the other's version (no new candle)
TWIN = """
import os, sys
os.environ["CANDLECAST_DATABASE_URL"], os.environ["CANDLECAST_CDD_BASE_URL"] = sys.argv[1:3]
from tasks.daily import forecast_symbol
o = forecast_symbol.fn("WAVEUSDT", preset="tiny", horizon=2, mode="retrain")
print(o.version, o.promoted, o.champion_version, flush=True)
"""


def test_two_daily_runs_at_once_duplicate_nothing(db_url: str, mirror_dir: Path) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", TWIN, db_url, str(mirror_dir)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    versions = sorted(int(out.split()[0]) for out, _ in outputs)
    assert versions == [1, 2]
    with session_factory(db_url)() as session:
        candles = session.scalar(select(func.count()).select_from(Candle))
        distinct = session.scalar(select(func.count(func.distinct(Candle.open_time))))
        keys = session.execute(select(Forecast.version_id, Forecast.as_of, Forecast.horizon)).all()
        champion = registry.champion(session, "Binance", "WAVEUSDT", "d")
    assert candles == distinct == 400
    assert len(keys) == len(set(keys)) and len(keys) in (2, 4)
    assert champion is not None
