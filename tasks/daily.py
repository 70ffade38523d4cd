"""The daily step for one symbol: ingest, fine-tune or retrain, register, forecast, score.

:func:`forecast_symbol` is a Prefect task (one per symbol in ``flows/daily.py``) and a plain
function (``.fn``) for tests, benchmarks and the backfill.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from candlecast.errors import IncompleteWindowError
from candlecast.identifiers import check_exchange, check_symbol, check_timeframe
from candlecast.settings import Settings, get_settings
from db import registry
from db.queries import latest_ingest_run, load_candles
from db.schema import ModelVersion
from db.session import session_factory
from tasks.ingest import IngestResult, ingest_symbol
from tasks.logs import current_flow_run_id, run_logger
from tasks.outcome import Mode, SymbolOutcome
from tasks.registry import forecast_rows, load_trained, register
from tasks.report import publish_plots
from tasks.runners import SYMBOL_TIMEOUT_S
from tasks.threads import freeze_heap
from tasks.timing import Stages
from tasks.training_slots import training_slot


@task(
    name="forecast-symbol",
    task_run_name="forecast {exchange} {symbol}",
    timeout_seconds=SYMBOL_TIMEOUT_S,  # on Dask, fan_out's deadline instead
)
def forecast_symbol(
    symbol: str,
    exchange: str = "Binance",
    timeframe: str = "d",
    *,
    mode: Mode = "auto",
    preset: str = "default",
    horizon: int = 7,
    as_of: datetime | None = None,
    ingest: bool = True,
    settings: Settings | None = None,
) -> SymbolOutcome:
    """Run the daily pipeline for one symbol and return what it did.

    ``as_of`` cuts the candles at that open time (a backfill sees only what existed then);
    ``ingest=False`` skips the download (the backfill, benchmarks). With no candle newer than
    the newest a version saw, ``auto`` and ``fine_tune`` make no new version: the champion
    serves its forecasts as they are (:func:`_kept`); ``retrain``, asked for, still retrains,
    and so does a changed preset. The new version's plots
    are drawn and published as ``settings.plots`` says (all, promoted only, none). Training
    holds one of the host's training slots (``tasks.training_slots.training_slot``); ``timings``
    records the seconds of each stage, measured here (``slot``: waiting for that slot), and
    of the whole step (``task``).
    """
    from models.presets import preset as load_preset
    from models.training import TrainingDivergedError

    stages = Stages()
    began = time.perf_counter()
    freeze_heap()  # once per process: full collections then skip what is loaded by now
    settings = settings or get_settings()
    symbol, exchange, timeframe = (
        check_symbol(symbol),
        check_exchange(exchange),
        check_timeframe(timeframe),
    )
    if horizon < 1:
        raise ValueError(f"{symbol}: horizon must be >= 1, got {horizon}")
    config = load_preset(preset)
    log = run_logger()
    sessions = session_factory(settings.sqlalchemy_url())
    ingested: IngestResult | None = None
    if ingest:
        ingested = ingest_symbol.fn(symbol, exchange, timeframe, settings=settings)
        stages.merge(ingested.timings)
    with stages("load"), sessions() as session:
        frame = load_candles(session, exchange, symbol, timeframe, end=as_of)
        base = _base_version(session, exchange, symbol, timeframe, as_of)
        previous = load_trained(session, base) if base is not None else None
        seen = registry.latest_version(
            session, exchange, symbol, timeframe, data_until=as_of, by="data_end"
        )
        run = latest_ingest_run(session, exchange, symbol, timeframe)
    if frame.empty:
        raise ValueError(f"{symbol}: no candles stored for {exchange} {timeframe}; ingest first")
    if previous is not None and previous.config.name != config.name:
        log.info(
            "%s: preset changed from %s to %s: retraining", symbol, previous.config.name, preset
        )
        previous = None
    kept = _kept(mode, seen, base, previous, frame, ingested, log)
    if kept is not None:
        backfill = as_of is not None
        _forecast_and_score(
            sessions, kept, previous, base, frame, horizon, log, backfill=backfill, stages=stages
        )
        stages.add("task", time.perf_counter() - began)
        kept.timings = stages.seconds
        return kept
    try:
        with ExitStack() as slot:
            with stages("slot"):  # waiting for one of the host's training slots
                slot.enter_context(training_slot())
            with stages("train"):
                trained = _train(previous, frame, config, mode, timeframe)
    except TrainingDivergedError as exc:
        return _rejected(sessions, exchange, symbol, timeframe, frame, ingested, horizon, exc, log)
    _log_training(log, symbol, trained)
    stages.add("evaluate", stages.seconds["train"] - trained.train_seconds)  # and serialization
    stages.seconds["train"] = trained.train_seconds
    with stages("register"):
        version = _register(sessions, trained, frame, exchange, symbol, base, run)
    log.info("%s: v%d %s: %s", symbol, version.version, version.status, version.decision)
    outcome = _outcome(exchange, symbol, timeframe, frame, ingested, trained, version)
    _forecast_and_score(
        sessions,
        outcome,
        trained,
        version,
        frame,
        horizon,
        log,
        backfill=as_of is not None,
        stages=stages,
    )
    if settings.plots == "all" or (settings.plots == "promoted" and outcome.promoted):
        with stages("plots"):
            outcome.plots = _plots(trained, frame, settings.reports_dir, symbol, version.version)
        with stages("artifact"):  # the plots' upload to the Prefect server
            publish_plots(outcome)
    stages.add("task", time.perf_counter() - began)
    outcome.timings = stages.seconds
    return outcome


def _register(
    sessions: Any,
    trained: Any,
    frame: pd.DataFrame,
    exchange: str,
    symbol: str,
    base: ModelVersion | None,
    run: Any,
) -> ModelVersion:
    return register(
        sessions,
        trained,
        frame,
        exchange=exchange,
        symbol=symbol,
        parent_id=base.id if base is not None and trained.kind == "fine_tune" else None,
        ingest_run_id=run.id if run else None,
        flow_run_id=current_flow_run_id(),
    )


def _rejected(
    sessions: Any,
    exchange: str,
    symbol: str,
    timeframe: str,
    frame: pd.DataFrame,
    ingested: IngestResult | None,
    horizon: int,
    error: Exception,
    log: Any,
) -> SymbolOutcome:
    """Training diverged: no version is stored, the champion stays and still forecasts."""
    reason = f"training rejected: {error}"
    log.error("%s: %s; the champion is unchanged", symbol, reason)
    outcome = _new_outcome(
        exchange,
        symbol,
        timeframe,
        frame,
        ingested,
        action="rejected",
        decision=reason,
        error=reason,
    )
    _forecast_and_score(sessions, outcome, None, None, frame, horizon, log)
    return outcome


def _kept(
    mode: Mode,
    seen: ModelVersion | None,
    base: ModelVersion | None,
    previous: Any,
    frame: pd.DataFrame,
    ingested: IngestResult | None,
    log: Any,
) -> SymbolOutcome | None:
    """The outcome of a step that makes no new version, or None when it trains one.

    No version is made when ``frame`` has no candle newer than the newest one a version saw
    (``seen``): ``base`` (the champion, else the newest version) is kept, and the caller still
    serves the champion's forecasts, which the forecasts table stores once (idempotent). Only
    the newest open time counts: a revised value of a candle already seen is no information
    worth a version, and the forecast reads the revised value anyway. ``retrain`` is a
    request and always trains; so does a changed preset (``previous`` is None then).
    """
    if mode == "retrain" or previous is None or base is None or seen is None:
        return None
    if seen.data_end is None or seen.data_end < frame.index[-1]:
        return None
    fmt = "%Y-%m-%d" if base.timeframe == "d" else "%Y-%m-%d %H:%M"
    decision = f"no new candle since v{seen.version} ({seen.data_end:{fmt}}): kept v{base.version}"
    log.info("%s: %s", base.symbol, decision)
    return _new_outcome(
        base.exchange,
        base.symbol,
        base.timeframe,
        frame,
        ingested,
        action="kept",
        decision=decision,
        test_mape=base.test_mape,
        persistence_mape=base.test_persistence_mape,
        skill=base.test_skill,
    )


def _new_outcome(
    exchange: str,
    symbol: str,
    timeframe: str,
    frame: pd.DataFrame,
    ingested: IngestResult | None,
    **fields: Any,
) -> SymbolOutcome:
    """An outcome with what every path knows: the series, the data and the ingest."""
    counts = (
        {k: getattr(ingested, k) for k in ("inserted", "updated", "rows_parsed")}
        if ingested is not None
        else None
    )
    warnings = [str(w["message"]) for w in (ingested.warnings if ingested else [])]
    return SymbolOutcome(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        as_of=frame.index[-1].isoformat(),
        rows=len(frame),
        ingest=counts,
        warnings=warnings,
        **fields,
    )


def _base_version(
    session: Any, exchange: str, symbol: str, timeframe: str, as_of: datetime | None
) -> ModelVersion | None:
    """What a fine-tune starts from: the champion, else the newest version; in a backfill
    (``as_of``), the newest version that saw no candle after ``as_of``."""
    if as_of is not None:
        return registry.latest_version(session, exchange, symbol, timeframe, data_until=as_of)
    return registry.champion(session, exchange, symbol, timeframe) or registry.latest_version(
        session, exchange, symbol, timeframe
    )


def _train(previous: Any, frame: pd.DataFrame, config: Any, mode: Mode, timeframe: str) -> Any:
    from tasks.train import update_model

    return update_model(previous, frame, config, policy=mode, timeframe=timeframe)


def _log_training(log: Any, symbol: str, trained: Any) -> None:
    history = trained.history
    epochs = len(history.get("loss", []))
    for i in range(epochs):
        parts = [f"{k} {v[i]:.4g}" for k, v in history.items() if i < len(v)]
        log.info("%s: %s epoch %d/%d: %s", symbol, trained.kind, i + 1, epochs, ", ".join(parts))
    test = trained.metrics.get("test") or {}
    if test:
        log.info(
            "%s: test MAPE %.3f%% vs persistence %.3f%% (skill %+.4f) in %.1f s",
            symbol,
            test["mape"],
            test["persistence_mape"],
            test["skill"],
            trained.train_seconds,
        )


def _outcome(
    exchange: str,
    symbol: str,
    timeframe: str,
    frame: pd.DataFrame,
    ingested: IngestResult | None,
    trained: Any,
    version: ModelVersion,
) -> SymbolOutcome:
    test = trained.metrics.get("test") or {}
    return _new_outcome(
        exchange,
        symbol,
        timeframe,
        frame,
        ingested,
        action=trained.kind,
        version=version.version,
        promoted=version.status == "promoted",
        decision=version.decision,
        test_mape=test.get("mape"),
        persistence_mape=test.get("persistence_mape"),
        skill=test.get("skill"),
        train_seconds=trained.train_seconds,
    )


def _forecast_and_score(
    sessions: Any,
    outcome: SymbolOutcome,
    trained: Any | None,
    version: ModelVersion | None,
    frame: pd.DataFrame,
    horizon: int,
    log: Any,
    *,
    backfill: bool = False,
    stages: Stages | None = None,
) -> None:
    """Forecast with the champion and score earlier forecasts. In a backfill today's champion
    saw the future, so the day's own new version forecasts, if it beats persistence."""
    stages, began = stages or Stages(), time.perf_counter()
    key = (outcome.exchange, outcome.symbol, outcome.timeframe)
    with sessions() as session:
        champion = registry.champion(session, *key)
        champion_model = None
        if backfill:
            beats = (outcome.test_mape or float("inf")) < (outcome.persistence_mape or 0.0)
            champion, champion_model = (version, trained) if beats else (None, None)
        elif champion is not None:
            fresh = version is not None and champion.id == version.id
            champion_model = trained if fresh else load_trained(session, champion)
    if champion is None:
        message = (
            f"{outcome.symbol}: no version beats persistence yet; no model forecast is "
            "served (use persistence: tomorrow = today)"
        )
        outcome.warnings.append(message)
        log.warning("%s", message)
    else:
        outcome.champion_version = champion.version
        try:
            outcome.forecasts = forecast_rows(champion_model, frame, horizon)
        except IncompleteWindowError as exc:  # an expected condition: one line, no traceback
            outcome.error = f"{outcome.symbol}: {exc}"
            log.warning("%s", outcome.error)
    with sessions.begin() as session:
        if champion is not None:
            outcome.forecasts_new = registry.save_forecasts(
                session, champion, outcome.forecasts, flow_run_id=current_flow_run_id()
            )
        stages.add("forecast", time.perf_counter() - began)
        with stages("score"):
            outcome.scored = registry.score_forecasts(session, *key)
    log.info(
        "%s: %d forecasts by champion v%s (%d new), %d earlier forecasts scored",
        outcome.symbol,
        len(outcome.forecasts),
        outcome.champion_version,
        outcome.forecasts_new,
        outcome.scored,
    )


def _plots(
    trained: Any, frame: pd.DataFrame, reports: Path, symbol: str, version: int
) -> list[str]:
    from tasks.plots import plot_all

    directory = reports / symbol / f"v{version}"
    return [str(p) for p in plot_all(trained, frame, directory)]
