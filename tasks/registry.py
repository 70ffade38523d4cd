"""From trained models to registry rows and back; the champion gate.

The gate is a pure function; registering, loading and scoring go through ``db.registry`` in
a transaction the caller owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from candlecast import __version__
from db import registry
from db.schema import ModelVersion
from tasks.trained import TrainedModel


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def gate(
    candidate_mape: float | None,
    persistence_mape: float | None,
    champion_mape: float | None,
) -> GateDecision:
    """Should a new version become champion?

    Only if, on the same test window, its MAPE is below persistence's and below the current
    champion's (``champion_mape`` is None when there is no champion). Ties do not promote.
    """
    if candidate_mape is None or persistence_mape is None or not np.isfinite(candidate_mape):
        return GateDecision(False, "not evaluated: no test window")
    versus = f"MAPE {candidate_mape:.3f}% vs persistence {persistence_mape:.3f}%"
    if candidate_mape >= persistence_mape:
        return GateDecision(False, f"does not beat persistence: {versus}")
    if champion_mape is not None and candidate_mape >= champion_mape:
        return GateDecision(
            False, f"does not beat the champion ({champion_mape:.3f}%) on the same window: {versus}"
        )
    if champion_mape is None:
        return GateDecision(True, f"first version to beat persistence: {versus}")
    return GateDecision(
        True, f"beats the champion ({champion_mape:.3f}%) and persistence: {versus}"
    )


def libraries() -> dict[str, str]:
    """Versions of the libraries a model depends on, recorded with each version."""
    found = {"candlecast": __version__}
    for name in ("tensorflow", "keras", "numpy", "pandas", "scikit-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            found[name] = "missing"
    return found


def _time(value: str | None) -> datetime | None:
    return pd.Timestamp(value).to_pydatetime() if value else None


def new_version(
    trained: TrainedModel,
    *,
    exchange: str,
    symbol: str,
    parent_id: int | None = None,
    ingest_run_id: int | None = None,
    flow_run_id: str | None = None,
) -> registry.NewVersion:
    """The registry's view of ``trained``: flat test metrics and data range beside the JSON."""
    meta = trained.metadata()
    test = trained.metrics.get("test") or {}
    data = trained.data_range
    details = {
        k: meta[k]
        for k in (
            "history",
            "data_range",
            "train_seconds",
            "fine_tunes_since_retrain",
            "retrain_val_ratio",
        )
    }
    return registry.NewVersion(
        exchange=exchange,
        symbol=symbol,
        timeframe=trained.timeframe,
        kind=trained.kind,
        preset=trained.config.name,
        model_bytes=trained.model_bytes,
        config=meta["config"],
        scaler=meta["scaler"],
        details=details,
        metrics=trained.metrics,
        libraries=libraries(),
        train_start=_time(data.get("first")),
        train_end=_time(data.get("val_start") or data.get("test_start") or data.get("last")),
        train_rows=(data.get("samples") or {}).get("train"),
        data_end=_time(data.get("last")),
        test_start=_time(data.get("test_start")),
        test_end=_time(data.get("last")),
        test_mape=test.get("mape"),
        test_persistence_mape=test.get("persistence_mape"),
        test_skill=test.get("skill"),
        parent_id=parent_id,
        ingest_run_id=ingest_run_id,
        flow_run_id=flow_run_id,
    )


def load_trained(session: Session, version: ModelVersion) -> TrainedModel:
    """The stored version as a TrainedModel; its bytes are checked against their sha256."""
    data = registry.model_bytes(session, version)
    meta: dict[str, Any] = {
        "config": version.config,
        "scaler": version.scaler,
        "timeframe": version.timeframe,
        "metrics": version.metrics,
        "kind": version.kind,
        **version.details,
    }
    return TrainedModel.from_parts(data, meta)


def mape_on_window(
    trained: TrainedModel, frame: pd.DataFrame, start: datetime | None
) -> float | None:
    """``trained``'s price-space MAPE on the targets of ``frame`` from ``start`` on (inclusive),
    with its own scaler: how a champion does on a candidate's test window."""
    from tasks.evaluate import mape
    from tasks.prepare import prepare
    from tasks.trained import predict_prices

    if start is None:
        return None
    prepared = prepare(frame, trained.config, trained.timeframe, scaler=trained.scaler)
    parts = [prepared.train, prepared.val, prepared.test]
    chosen = [p.select(np.asarray(p.target_time >= pd.Timestamp(start))) for p in parts]
    actual = np.concatenate([p.actual_close for p in chosen])
    if actual.size == 0:
        return None
    predicted = np.concatenate([predict_prices(trained, p) for p in chosen if len(p)])
    return mape(actual, predicted)


def register(
    sessions: sessionmaker[Session],
    trained: TrainedModel,
    frame: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    parent_id: int | None = None,
    ingest_run_id: int | None = None,
    flow_run_id: str | None = None,
) -> ModelVersion:
    """Register ``trained`` as the next version of its series and apply the champion gate.

    The current champion is scored on the new version's test window first (a read); then one
    write transaction stores the version, its bytes and, if it won, the champion change. A
    champion that changed in between is not overtaken blindly: the new version stays a
    candidate and says why.
    """
    candidate = new_version(
        trained,
        exchange=exchange,
        symbol=symbol,
        parent_id=parent_id,
        ingest_run_id=ingest_run_id,
        flow_run_id=flow_run_id,
    )
    with sessions() as session:
        current = registry.champion(session, exchange, symbol, trained.timeframe)
        current_id = current.id if current else None
        champion_mape = (
            mape_on_window(load_trained(session, current), frame, candidate.test_start)
            if current
            else None
        )
    decision = gate(candidate.test_mape, candidate.test_persistence_mape, champion_mape)
    with sessions.begin() as session:
        version = registry.add_version(
            session,
            candidate,
            decision=decision.reason,
            champion_mape_same_window=champion_mape,
        )
        now_champion = registry.get_series(session, exchange, symbol, trained.timeframe)
        if decision.promote and now_champion and now_champion.champion_id == current_id:
            registry.promote(session, version, decision.reason)
        elif decision.promote:
            version.decision = "champion changed while this version was scored; kept as candidate"
        elif current_id is None and now_champion is not None:
            registry.set_note(
                session,
                now_champion.id,
                f"no version beats persistence yet (newest v{version.version}: "
                f"{decision.reason}); forecasts are not served",
            )
    return version


def forecast_rows(trained: TrainedModel, frame: pd.DataFrame, horizon: int) -> list[dict[str, Any]]:
    """The next ``horizon`` closes after the newest candle of ``frame``, with persistence
    (the newest close) and the number of bridged input candles beside each, as rows for
    ``db.forecasts.save_forecasts``."""
    from tasks.forecast import forecast

    predicted = forecast(trained, frame, horizon)
    as_of = frame.index[-1].to_pydatetime()
    persistence = float(frame["close"].iloc[-1])
    return [
        {
            "as_of": as_of,
            "target_time": when.to_pydatetime(),
            "horizon": int(row.step),
            "predicted_close": float(row.close),
            "persistence_close": persistence,
            "imputed_inputs": int(row.imputed_inputs),
        }
        for when, row in predicted.iterrows()
    ]
