"""The daily step for one symbol: ingest, load, train or keep, register, forecast, score.

:func:`forecast_symbol` is a Prefect task (one per symbol in ``flows/daily.py``) and a plain
function (``.fn``) for tests, benchmarks and the backfill. It reads as the steps it takes;
each is a short function below it, in the order they run. Registry decisions (the champion
gate) live in ``tasks.registry``, registry storage in ``db.registry``.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from sqlalchemy.orm import Session, sessionmaker

from candlecast.core.errors import IncompleteWindowError
from candlecast.core.identifiers import Series
from candlecast.core.settings import Settings, get_settings
from db import forecasts, registry
from db.queries import latest_ingest_run, load_candles
from db.schema import ModelVersion
from db.session import session_factory
from models.presets import ModelConfig
from tasks.ingest import IngestResult, ingest_symbol
from tasks.intervals import SERVED_DAYS, served_coverage, too_narrow
from tasks.logs import current_flow_run_id, run_logger
from tasks.outcome import Mode, SymbolOutcome
from tasks.registry import Verdict, forecast_rows, judge, load_trained, store
from tasks.report import publish_plots
from tasks.runners import SYMBOL_TIMEOUT_S
from tasks.threads import freeze_heap
from tasks.timing import Stages
from tasks.trained import TrainedModel
from tasks.training_slots import training_slot

Sessions = sessionmaker[Session]


@dataclass
class Loaded:
    """What one symbol's step knows once its candles and versions are read."""

    series: Series
    frame: pd.DataFrame  # final candles, cut at ``as_of`` in a backfill
    ingested: IngestResult | None
    base: ModelVersion | None  # what a fine-tune starts from: the champion, else the newest
    previous: TrainedModel | None  # ``base`` loaded; None after a change of preset
    seen: ModelVersion | None  # the version that saw the newest candles
    ingest_run_id: int | None
    backfill: bool

    def outcome(self, **fields: Any) -> SymbolOutcome:
        """An outcome with what every path knows: the series, the data and the ingest."""
        ingested = self.ingested
        counts = (
            {k: getattr(ingested, k) for k in ("inserted", "updated", "rows_parsed")}
            if ingested is not None
            else None
        )
        warnings = [str(w["message"]) for w in (ingested.warnings if ingested else [])]
        return SymbolOutcome(
            exchange=self.series.exchange,
            symbol=self.series.symbol,
            timeframe=self.series.timeframe,
            as_of=self.frame.index[-1].isoformat(),
            rows=len(self.frame),
            ingest=counts,
            warnings=warnings,
            **fields,
        )


@dataclass
class Update:
    """The model step's result: the outcome so far, and the model and version that forecast
    when this step's own version is the one (``model`` and ``version`` None otherwise)."""

    outcome: SymbolOutcome
    model: TrainedModel | None = None
    version: ModelVersion | None = None
    new: bool = False  # a version was registered: its plots may be drawn
    predicted: pd.DataFrame | None = None  # its forecast, once stored: the fan chart's


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
    and so does a changed preset. The new version's plots are drawn and published as
    ``settings.plots`` says (all, promoted only, none). Training holds one of the host's
    training slots (``tasks.training_slots``); ``timings`` records the seconds of each stage
    (``slot``: waiting for that slot) and of the whole step (``task``).
    """
    from models.presets import preset as load_preset

    began, stages = time.perf_counter(), Stages()
    freeze_heap()  # once per process: full collections then skip what is loaded by now
    settings = settings or get_settings()
    series = Series.checked(exchange, symbol, timeframe)
    if horizon < 1:
        raise ValueError(f"{series.symbol}: horizon must be >= 1, got {horizon}")
    config = load_preset(preset)
    sessions = session_factory(settings.sqlalchemy_url())
    ingested = None
    if ingest:
        ingested = ingest_symbol.fn(
            series.symbol, series.exchange, series.timeframe, settings=settings
        )
        stages.merge(ingested.timings)
    with stages("load"):
        loaded = _load(sessions, series, config, as_of, ingested)
    update = _kept(loaded, mode) or _train_and_register(sessions, loaded, config, mode, stages)
    _forecast_and_score(sessions, loaded, update, horizon, stages)
    if update.new and _draws_plots(settings, update.outcome):
        _plot(update, loaded.frame, settings, stages)
    stages.add("task", time.perf_counter() - began)
    update.outcome.timings = stages.seconds
    return update.outcome


def _load(
    sessions: Sessions,
    series: Series,
    config: ModelConfig,
    as_of: datetime | None,
    ingested: IngestResult | None,
) -> Loaded:
    """The series' candles (up to ``as_of``) and the versions the step builds on."""
    with sessions() as session:
        frame = load_candles(session, *series, end=as_of)
        base = _base_version(session, series, as_of)
        previous = load_trained(session, base) if base is not None else None
        seen = registry.latest_version(session, *series, data_until=as_of, by="data_end")
        run = latest_ingest_run(session, *series)
    if frame.empty:
        raise ValueError(
            f"{series.symbol}: no candles stored for {series.exchange} {series.timeframe}; "
            "ingest first"
        )
    if previous is not None and previous.config.name != config.name:
        run_logger().info(
            "%s: preset changed from %s to %s: retraining",
            series.symbol,
            previous.config.name,
            config.name,
        )
        previous = None
    return Loaded(
        series, frame, ingested, base, previous, seen, run.id if run else None, as_of is not None
    )


def _served_since_retrain(
    session: Session, series: Series, until: datetime
) -> dict[str, Any] | None:
    """`served_coverage` of the newest `SERVED_DAYS` bands served at h=1 since the newest
    retrain's last candle (whichever version served them) and scored up to `until`; None
    without any. After a retrain that was not promoted the count starts again, so one
    stretch of misses asks for one retrain, not one a day."""
    retrained = registry.latest_version(session, *series, data_until=until, kind="retrain")
    rows = forecasts.served_bands(
        session, *series, limit=SERVED_DAYS, since=retrained.data_end if retrained else None,
        until=until,
    )  # fmt: skip
    return served_coverage(rows) if rows else None


def _base_version(session: Session, series: Series, as_of: datetime | None) -> ModelVersion | None:
    """What a fine-tune starts from: the champion, else the newest version; in a backfill
    (``as_of``), the newest version that saw no candle after ``as_of``."""
    if as_of is not None:
        return registry.latest_version(session, *series, data_until=as_of)
    return registry.champion(session, *series) or registry.latest_version(session, *series)


def _kept(loaded: Loaded, mode: Mode) -> Update | None:
    """The update of a step that makes no new version, or None when it trains one.

    No version is made when the candles hold none newer than the newest one a version saw
    (``seen``): ``base`` (the champion, else the newest version) is kept, and the step still
    serves the champion's forecasts, which the forecasts table stores once (idempotent). Only
    the newest open time counts: a revised value of a candle already seen is no information
    worth a version, and the forecast reads the revised value anyway. ``retrain`` is a
    request and always trains; so does a changed preset (``previous`` is None then).
    """
    base, seen = loaded.base, loaded.seen
    if mode == "retrain" or loaded.previous is None or base is None or seen is None:
        return None
    if seen.data_end is None or seen.data_end < loaded.frame.index[-1]:
        return None
    decision = (
        f"no new candle since v{seen.version} ({loaded.series.label(seen.data_end)}): "
        f"kept v{base.version}"
    )
    run_logger().info("%s: %s", loaded.series.symbol, decision)
    outcome = loaded.outcome(
        action="kept",
        decision=decision,
        test_mape=base.test_mape,
        persistence_mape=base.test_persistence_mape,
        skill=base.test_skill,
        skill_p_value=(base.metrics.get("test") or {}).get("skill_p_value"),
    )
    return Update(outcome, loaded.previous, base)


def _train_and_register(
    sessions: Sessions, loaded: Loaded, config: ModelConfig, mode: Mode, stages: Stages
) -> Update:
    """Fine-tune or retrain (holding a training slot) and let the champion gate judge the
    result; once it passes, train the served twin (`tasks.train.refit`); then register the
    new version. A diverged training stores nothing: the champion stays."""
    from models.training import TrainingDivergedError
    from tasks.train import refit, update_model

    log, series = run_logger(), loaded.series
    narrow = _narrow(sessions, loaded) if mode == "auto" else None
    try:
        with ExitStack() as slot:
            with stages("slot"):  # waiting for one of the host's training slots
                slot.enter_context(training_slot())
            trained = update_model(
                loaded.previous, loaded.frame, config, mode, series.timeframe, stages=stages,
                narrow=narrow is not None,
            )  # fmt: skip
            _log_training(series.symbol, trained)
            fine_tuned = loaded.base is not None and trained.kind == "fine_tune"
            parent_id = loaded.base.id if fine_tuned else None
            verdict = judge(
                sessions, trained, loaded.frame, exchange=series.exchange,
                symbol=series.symbol, parent_id=parent_id, stages=stages,
            )  # fmt: skip
            _log_walk(series.symbol, verdict)
            if _serves(loaded, trained, verdict):
                with stages("refit"):
                    trained = refit(trained, loaded.previous, loaded.frame)
                _log_refit(series.symbol, trained)
    except TrainingDivergedError as exc:
        reason = f"training rejected: {exc}"
        log.error("%s: %s; the champion is unchanged", series.symbol, reason)
        return Update(loaded.outcome(action="rejected", decision=reason, error=reason))
    with stages("register"):
        version = store(
            sessions, trained, verdict, exchange=series.exchange, symbol=series.symbol,
            parent_id=parent_id, ingest_run_id=loaded.ingest_run_id,
            flow_run_id=current_flow_run_id(),
        )  # fmt: skip
    log.info("%s: v%d %s: %s", series.symbol, version.version, version.status, version.decision)
    test = trained.metrics.get("test") or {}
    twin_seconds = trained.served.train_seconds if trained.served is not None else 0.0
    outcome = loaded.outcome(
        action=trained.kind,
        version=version.version,
        promoted=version.status == "promoted",
        decision=f"{narrow}; {version.decision}" if narrow else version.decision,
        test_mape=test.get("mape"),
        persistence_mape=test.get("persistence_mape"),
        skill=test.get("skill"),
        skill_p_value=test.get("skill_p_value"),
        train_seconds=trained.train_seconds + twin_seconds,
    )
    return Update(outcome, trained, version, new=True)


def _narrow(sessions: Sessions, loaded: Loaded) -> str | None:
    """Why `auto` retrains today: the bands served since the last retrain have been too
    narrow (`tasks.intervals.too_narrow`); logged. None when they have not, or with no model
    to fine-tune."""
    if loaded.previous is None:
        return None
    with sessions() as session:
        until = loaded.frame.index[-1].to_pydatetime()
        served = _served_since_retrain(session, loaded.series, until)
    short = too_narrow(**served) if served is not None else None
    if short is None:
        return None
    reason = (
        f"the {short[0]}% band served since the last retrain covered {short[1]:.1f}% of "
        f"{served['n']} days, further below nominal than chance allows: retraining"
    )
    run_logger().info("%s: %s", loaded.series.symbol, reason)
    return reason


def _serves(loaded: Loaded, trained: TrainedModel, verdict: Verdict) -> bool:
    """Will the new version forecast (and so need its served twin)? When the gate promotes
    it; in a backfill, when it beats persistence (:func:`_forecaster`)."""
    if loaded.backfill:
        test = trained.metrics.get("test") or {}
        return _beats_persistence(test.get("mape"), test.get("persistence_mape"))
    return verdict.decision.promote


def _beats_persistence(mape: float | None, persistence_mape: float | None) -> bool:
    return (mape or float("inf")) < (persistence_mape or 0.0)


def _log_refit(symbol: str, trained: TrainedModel) -> None:
    twin = trained.served
    if twin is not None:
        run_logger().info(
            "%s: served twin %s on every candle to %s in %.1f s",
            symbol,
            "refitted" if twin.kind == "retrain" else "fine-tuned",
            twin.data_range["last"][:10],
            twin.train_seconds,
        )


def _log_walk(symbol: str, verdict: Verdict) -> None:
    walk = verdict.walk
    if walk is not None:
        run_logger().info(
            "%s: test window walked as served: %d days, a fine-tune every %d, in %.1f s",
            symbol,
            walk["n"],
            walk["every_days"],
            walk["seconds"],
        )


def _log_training(symbol: str, trained: TrainedModel) -> None:
    log, history = run_logger(), trained.history
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


def _forecaster(
    session: Session, loaded: Loaded, update: Update
) -> tuple[ModelVersion | None, TrainedModel | None]:
    """The version that forecasts today and its model. In a backfill today's champion saw the
    future, so the day's own version forecasts, if it beats persistence."""
    outcome = update.outcome
    if loaded.backfill:
        beats = _beats_persistence(outcome.test_mape, outcome.persistence_mape)
        return (update.version, update.model) if beats else (None, None)
    champion = registry.champion(session, *loaded.series)
    if champion is None:
        return None, None
    fresh = update.version is not None and champion.id == update.version.id
    return champion, update.model if fresh else load_trained(session, champion)


def _forecast_and_score(
    sessions: Sessions, loaded: Loaded, update: Update, horizon: int, stages: Stages
) -> None:
    """Forecast with the version that serves, store the forecasts once, and score earlier
    forecasts whose target candle has arrived."""
    from tasks.forecast import forecast

    log, outcome, began = run_logger(), update.outcome, time.perf_counter()
    with sessions() as session:
        champion, model = _forecaster(session, loaded, update)
    if champion is None or model is None:
        message = (
            f"{outcome.symbol}: no version beats persistence yet; no model forecast is "
            "served (use persistence: tomorrow = today)"
        )
        outcome.warnings.append(message)
        log.warning("%s", message)
    else:
        outcome.champion_version = champion.version
        try:
            predicted = forecast(model.serving, loaded.frame, horizon)
            outcome.forecasts = forecast_rows(predicted, loaded.frame)
            if model is update.model:  # the day's own version: its plots draw this forecast
                update.predicted = predicted
        except IncompleteWindowError as exc:  # an expected condition: one line, no traceback
            outcome.error = f"{outcome.symbol}: {exc}"
            log.warning("%s", outcome.error)
    with sessions.begin() as session:
        if champion is not None:
            outcome.forecasts_new = forecasts.save_forecasts(
                session, champion, outcome.forecasts, flow_run_id=current_flow_run_id()
            )
        stages.add("forecast", time.perf_counter() - began)
        with stages("score"):
            outcome.scored = forecasts.score_forecasts(session, *loaded.series)
            served = forecasts.served_bands(session, *loaded.series, limit=SERVED_DAYS)
    _note_served(outcome, served)
    log.info(
        "%s: %d forecasts by champion v%s (%d new), %d earlier forecasts scored",
        outcome.symbol,
        len(outcome.forecasts),
        outcome.champion_version,
        outcome.forecasts_new,
        outcome.scored,
    )


def _note_served(outcome: SymbolOutcome, rows: list[tuple[float, ...]]) -> None:
    """Record how the series' served bands did, and warn when they have been too narrow."""
    if not rows:
        return
    outcome.served = served = served_coverage(rows)
    short = too_narrow(**served)
    if short is not None:
        message = (
            f"{outcome.symbol}: the served {short[0]}% band covered {short[1]:.1f}% of the "
            f"last {served['n']} days, further below nominal than chance allows: the bands "
            "have been too narrow (under mode=auto a run retrains once those served since the "
            "last retrain are)"
        )
        outcome.warnings.append(message)
        run_logger().warning("%s", message)


def _draws_plots(settings: Settings, outcome: SymbolOutcome) -> bool:
    return settings.plots == "all" or (settings.plots == "promoted" and outcome.promoted)


def _plot(update: Update, frame: pd.DataFrame, settings: Settings, stages: Stages) -> None:
    """The new version's plots as files, then as the symbol's Prefect artifact."""
    from tasks.plots import plot_all

    outcome = update.outcome
    directory = settings.reports_dir / outcome.symbol / f"v{outcome.version}"
    with stages("plots"):
        plots = plot_all(update.model, frame, directory, update.predicted)
        outcome.plots = [str(p) for p in plots]
    with stages("artifact"):  # the plots' upload to the Prefect server
        publish_plots(outcome)
