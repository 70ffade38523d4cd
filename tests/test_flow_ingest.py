"""The ingest flow under a real (temporary) Prefect server, over a CDD mirror on loopback."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from candlecast.core.settings import Settings
from db.schema import Candle, IngestRun
from db.session import session_factory
from flows.ingest import ingest


def test_flow_ingests_each_symbol_and_records_its_flow_run(prefect_env: Settings) -> None:
    results = ingest(symbols=["ETHUSDT", "BNBUSDT"])
    assert [(r.symbol, r.inserted) for r in results] == [("ETHUSDT", 1407), ("BNBUSDT", 1271)]
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        assert session.scalar(select(func.count()).select_from(Candle)) == 1407 + 1271
        flow_runs = set(session.scalars(select(IngestRun.flow_run_id)))
    assert len(flow_runs) == 1 and None not in flow_runs


def test_failing_symbol_fails_the_run_but_keeps_the_others(prefect_env: Settings) -> None:
    with pytest.raises(RuntimeError, match=r"1 of 2 symbols failed: NOPEUSDT: HTTP 404"):
        ingest(symbols=["NOPEUSDT", "ADAUSDT"])
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        assert session.scalar(select(func.count()).select_from(Candle)) == 1164
        statuses = dict(session.execute(select(IngestRun.symbol, IngestRun.status)).all())
    assert statuses == {"NOPEUSDT": "failed", "ADAUSDT": "success"}
