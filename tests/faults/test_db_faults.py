"""Database faults: a PostgreSQL connection killed mid-transaction, SQLite held by another
writer. Everything of the broken transaction is rolled back and the rerun completes."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from candlecast.core.settings import Settings
from db import registry
from db.schema import Candle, IngestRun, ModelBlob, ModelSeries, ModelVersion
from db.session import (
    CLIENT_KEEPALIVES,
    SERVER_KEEPALIVES,
    build_engine,
    get_engine,
    session_factory,
)
from tasks.ingest import ingest_symbol
from tests.conftest import settings_for

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@contextmanager
def kill_backend_on(
    url: str, statement_prefix: str, occurrence: int = 1, containing: str = ""
) -> Iterator[list[int]]:
    """Terminate the PostgreSQL backend of the connection that is about to run the
    ``occurrence``-th statement that starts with ``statement_prefix`` and contains
    ``containing`` (both upper case), with pg_terminate_backend from a second connection: a
    real server-side kill in the middle of a transaction."""
    engine = get_engine(url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    seen, killed = [0], []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text_upper = statement.lstrip().upper()
        if not text_upper.startswith(statement_prefix) or containing not in text_upper:
            return
        seen[0] += 1
        if seen[0] == occurrence:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killed.append(pid)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield killed
    finally:
        event.remove(engine, "before_cursor_execute", before)
        admin.dispose()


def count(url: str, model: type) -> int:
    with session_factory(url)() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def pg_settings(postgres_db: str, cdd_dir: Path, tmp_path: Path) -> Settings:
    return settings_for(postgres_db, str(cdd_dir), tmp_path)


@pytest.mark.postgres
def test_connection_killed_mid_ingest_rolls_back_and_rerun_completes(
    postgres_db: str, pg_settings: Settings
) -> None:
    postgres_url, settings = postgres_db, pg_settings
    # The candles are already written inside the transaction when the run's success record
    # is about to be updated in the same transaction: kill the connection right there.
    with (
        kill_backend_on(postgres_url, "UPDATE INGEST_RUNS", containing="ROWS_PARSED") as killed,
        pytest.raises(DBAPIError),
    ):
        ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert killed, "the kill did not happen"
    assert count(postgres_url, Candle) == 0  # the first chunk was rolled back too
    with session_factory(postgres_url)() as session:
        run = session.scalars(select(IngestRun).order_by(IngestRun.id.desc())).first()
    assert run is not None and run.status == "failed" and "terminat" in (run.error or "").lower()
    result = ingest_symbol.fn("BTCUSDT", settings=settings, now=NOW)
    assert (result.inserted, result.updated) == (2981, 0)
    with session_factory(postgres_url)() as session:
        distinct = session.scalar(select(func.count(func.distinct(Candle.open_time))))
    assert distinct == count(postgres_url, Candle) == 2981


def _version(symbol: str = "BTCUSDT") -> registry.NewVersion:
    return registry.NewVersion(
        exchange="Binance",
        symbol=symbol,
        timeframe="d",
        kind="retrain",
        preset="tiny",
        model_bytes=os.urandom(128),
        config={},
        scaler={},
        details={},
        metrics={},
        libraries={},
        test_mape=1.0,
        test_persistence_mape=2.0,
    )


@pytest.mark.postgres
def test_connection_killed_mid_registration_leaves_no_half_version(postgres_db: str) -> None:
    postgres_url = postgres_db
    sessions = session_factory(postgres_url)
    with sessions.begin() as session:  # a champion already exists
        champion = registry.add_version(
            session, _version(), decision="ok", champion_mape_same_window=None
        )
        registry.promote(session, champion, "first")
    with (
        kill_backend_on(postgres_url, "INSERT INTO MODEL_BLOBS") as killed,
        pytest.raises(DBAPIError),
        sessions.begin() as session,
    ):
        version = registry.add_version(
            session, _version(), decision="x", champion_mape_same_window=None
        )
        registry.promote(session, version, "better")
    assert killed
    assert count(postgres_url, ModelVersion) == count(postgres_url, ModelBlob) == 1
    with sessions() as session:
        series = session.scalars(select(ModelSeries)).one()
        assert (series.last_version, series.champion_id) == (1, champion.id)
    with sessions.begin() as session:  # the rerun takes the number the broken one would have
        again = registry.add_version(
            session, _version(), decision="ok", champion_mape_same_window=None
        )
    assert again.version == 2


def test_sqlite_held_by_another_writer_waits_instead_of_failing(
    sqlite_db: str, cdd_dir: Path, tmp_path: Path
) -> None:
    url = sqlite_db
    settings = settings_for(url, str(cdd_dir), tmp_path)
    path = get_engine(url).url.database
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer holds the database
    outcome: dict[str, Any] = {}

    def ingest() -> None:
        try:
            outcome["result"] = ingest_symbol.fn("ETHUSDT", settings=settings, now=NOW)
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    worker = threading.Thread(target=ingest)
    worker.start()
    worker.join(timeout=2.0)
    # It cannot have finished while the lock is held; it must not have failed either.
    assert worker.is_alive() and not outcome, outcome
    holder.execute("COMMIT")
    holder.close()
    worker.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].inserted == 1407
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        check.close()


@pytest.mark.postgres
@pytest.mark.parametrize("theirs", [None, "-c statement_timeout=12345 -c tcp_keepalives_idle=45"])
def test_postgres_connections_are_probed_so_a_dead_machine_loses_its_locks_in_a_minute(
    postgres_url: str, theirs: str | None
) -> None:
    """The server reports the keepalive options of its own socket (0 on a Unix socket, the
    kernel's defaults when unset); options in the URL still apply and win where they differ.
    A machine dying mid-lock needs a network that drops packets, which no test here has."""
    url = make_url(postgres_url)
    if theirs is not None:
        url = url.update_query_dict({"options": theirs})
    engine = build_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            shown = {name: connection.scalar(text(f"SHOW {name}")) for name in SERVER_KEEPALIVES}
            client = connection.connection.driver_connection.info.get_parameters()
            timeout = connection.scalar(text("SHOW statement_timeout"))
    finally:
        engine.dispose()
    expected = {name: str(value) for name, value in SERVER_KEEPALIVES.items()}
    if theirs is not None:
        expected["tcp_keepalives_idle"] = "45"
        assert timeout == "12345ms"
    assert shown == expected
    assert {k: client.get(k) for k in CLIENT_KEEPALIVES} == {
        k: str(v) for k, v in CLIENT_KEEPALIVES.items()
    }
