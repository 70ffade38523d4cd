"""From trained models to registry rows and back; the champion gate.

The gate is a pure function; registering, loading and scoring go through ``db.registry`` in
a transaction the caller owns.
"""

from __future__ import annotations

import dataclasses
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
from tasks.intervals import too_narrow
from tasks.timing import Stages
from tasks.trained import TrainedModel
from tasks.walk import WALK_EVERY, served_walk

TIE_MARGIN = 0.001
"""Relative difference in MAPE, or in interval score, below which two forecasts tie."""


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class WindowScore:
    """How a model did on one test window: its point MAPE and, with bands, the coverage of
    its 80% and 95% bands and its 95% interval score at h=1 (None: no bands), with the
    persistence MAPE of the same rows."""

    mape: float
    persistence_mape: float
    n: int = 0
    cov80: float | None = None
    cov95: float | None = None
    winkler95: float | None = None

    @classmethod
    def of(cls, metrics: dict[str, Any] | None) -> WindowScore | None:
        """From a part's metrics (``TrainedModel.metrics["test"]``); None without any."""
        if not metrics or metrics.get("mape") is None:
            return None
        bands = (metrics.get("bands") or {}).get("model") or {}
        first = {k: (bands.get(k) or [None])[0] for k in ("n", "cov80", "cov95", "winkler95")}
        return cls(
            metrics["mape"], metrics["persistence_mape"], first["n"] or 0,
            first["cov80"], first["cov95"], first["winkler95"],
        )  # fmt: skip


def miscalibrated(score: WindowScore) -> str | None:
    """Why the bands' coverage on the window is further below nominal than chance allows
    (:func:`too_narrow`); None when it is not, or without bands."""
    short = too_narrow(score.n, score.cov80, score.cov95)
    if short is None:
        return None
    nominal, covered = short
    return f"its {nominal}% band covers {covered:.1f}% of {score.n} test days"


def beats_persistence(score: WindowScore) -> bool:
    """Does the window's MAPE beat persistence's by more than `TIE_MARGIN`?"""
    return score.mape < score.persistence_mape * (1 - TIE_MARGIN)


def gate(
    candidate: WindowScore | None,
    champion: WindowScore | None,
    refresh: bool = False,
    walked: WindowScore | None = None,
) -> GateDecision:
    """Should a new version become champion? ``champion`` is the current champion scored on
    the candidate's test window (None: there is none); ``refresh``: the candidate is a
    fine-tune of that champion; ``walked``: the candidate's test window walked along the
    served path (`tasks.walk.served_walk`), whose bands are the ones that would be served.

    - Its MAPE must beat persistence's by more than `TIE_MARGIN`: a tie is not a win.
    - A new lineage's bands, if any, must cover as nominal within chance
      (:func:`miscalibrated`) on the walked window (on the static one without a walk). A
      refresh was tested when its lineage began, and answers to the champion's interval
      score instead.
    - Against the champion, a new lineage must beat its MAPE by the margin; a refresh (the
      champion fine-tuned on newer candles) replaces it unless its MAPE is worse by more than
      the margin. Either way its 95% interval score must not be worse by more than the
      margin.
    """
    if candidate is None or not np.isfinite(candidate.mape):
        return GateDecision(False, "not evaluated: no test window")
    c = candidate
    versus = f"MAPE {c.mape:.3f}% vs persistence {c.persistence_mape:.3f}%"
    if c.winkler95 is not None:
        versus += f"; 95% band covers {c.cov95:.1f}%, interval score {c.winkler95:.2f}%"
    if walked is not None and walked.cov95 is not None:
        versus += (
            f"; served path walked: 80% and 95% bands cover {walked.cov80:.1f}% and "
            f"{walked.cov95:.1f}%"
        )
    if not beats_persistence(c):
        return GateDecision(False, f"does not beat persistence by {TIE_MARGIN:.1%}: {versus}")
    off = None if refresh else miscalibrated(walked or c)
    if off:
        where = "on the served path" if walked else "on the test window"
        return GateDecision(False, f"bands not calibrated {where}: {off}: {versus}")
    if champion is None:
        return GateDecision(True, f"first version to beat persistence: {versus}")
    against = f"the champion ({champion.mape:.3f}%) on the same window"
    if refresh and c.mape > champion.mape * (1 + TIE_MARGIN):
        return GateDecision(False, f"a fine-tune worse than {against}: {versus}")
    if not refresh and c.mape >= champion.mape * (1 - TIE_MARGIN):
        return GateDecision(False, f"does not beat {against} by {TIE_MARGIN:.1%}: {versus}")
    if None not in (c.winkler95, champion.winkler95) and c.winkler95 > champion.winkler95 * (
        1 + TIE_MARGIN
    ):
        return GateDecision(
            False,
            f"bands worse than the champion's (interval score {champion.winkler95:.2f}%) "
            f"on the same window: {versus}",
        )
    if refresh:
        return GateDecision(True, f"the champion refreshed, no worse than {against}: {versus}")
    return GateDecision(True, f"beats {against} and persistence: {versus}")


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
    walk: dict[str, Any] | None = None,
) -> registry.NewVersion:
    """The registry's view of ``trained``: flat test metrics and data range beside the JSON;
    ``walk`` (`walk_scores`), where the gate walked the test window, joins the metrics."""
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
            "bands",
            "served",
        )
    }
    score = WindowScore.of(test)
    served = trained.served_bytes
    return registry.NewVersion(
        exchange=exchange,
        symbol=symbol,
        timeframe=trained.timeframe,
        kind=trained.kind,
        preset=trained.config.name,
        model_bytes=trained.model_bytes,
        band_bytes=trained.band_bytes,
        served_bytes=None if served is None else served[0],
        served_band_bytes=None if served is None else served[1],
        config=meta["config"],
        scaler=meta["scaler"],
        details=details,
        metrics=trained.metrics if walk is None else {**trained.metrics, "walk": walk},
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
        test_cov80=score.cov80 if score else None,
        test_cov95=score.cov95 if score else None,
        test_winkler95=score.winkler95 if score else None,
        parent_id=parent_id,
        ingest_run_id=ingest_run_id,
        flow_run_id=flow_run_id,
    )


def load_trained(session: Session, version: ModelVersion, served: bool = True) -> TrainedModel:
    """The stored version as a TrainedModel, with its served twin unless ``served`` is False
    (scoring needs only the evaluation twin); the networks read are checked against their
    sha256."""
    data = registry.model_bytes(session, version)
    details = {k: v for k, v in version.details.items() if not k.endswith("_sha256")}
    if not served:
        details.pop("served", None)
    meta: dict[str, Any] = {
        "config": version.config,
        "scaler": version.scaler,
        "timeframe": version.timeframe,
        "metrics": version.metrics,
        "kind": version.kind,
        **details,
    }
    twin = registry.served_bytes(session, version) if served else None
    return TrainedModel.from_parts(data, meta, registry.band_bytes(session, version), twin)


def score_on_window(
    trained: TrainedModel, frame: pd.DataFrame, start: datetime | None
) -> WindowScore | None:
    """``trained``'s score on the targets of ``frame`` from ``start`` on (inclusive), with its
    own scaler: how a champion does on a candidate's test window."""
    from tasks.evaluate import mape
    from tasks.forecast import backtest_bands, band_residuals, unseen_time
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
    metrics: dict[str, Any] = {
        "mape": mape(actual, predicted),
        "persistence_mape": mape(actual, np.concatenate([p.base_close for p in chosen])),
    }
    if trained.bands is not None:
        first = int(frame.index.searchsorted(pd.Timestamp(start)))
        unseen = int(frame.index.searchsorted(unseen_time(trained)))
        residuals = band_residuals(
            trained.keras_model, trained.scaler, trained.config, trained.bands, frame,
            trained.timeframe,
        )  # fmt: skip
        closes = frame["close"].to_numpy(dtype=float)
        window = {"test": (first, len(frame))}
        metrics["bands"] = backtest_bands(residuals, trained.bands, closes, window, unseen).get(
            "test"
        )
    return WindowScore.of(metrics)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on a trained model, and the champion it was judged against (its
    id, None: none; its MAPE on the model's test window); ``walk``: the served path walked
    across that window (`walk_scores`), where the gate tested its bands there."""

    decision: GateDecision
    champion_id: int | None
    champion_mape: float | None
    walk: dict[str, Any] | None = None


def judge(
    sessions: sessionmaker[Session],
    trained: TrainedModel,
    frame: pd.DataFrame,
    *,
    exchange: str,
    symbol: str,
    parent_id: int | None = None,
    stages: Stages | None = None,
) -> Verdict:
    """Score the current champion on ``trained``'s test window (a read) and let :func:`gate`
    decide; a fine-tune of that champion (``parent_id``) is a refresh. A new lineage with
    bands that passes every other test has its test window walked along the served path
    (`tasks.walk.served_walk`, timed as stage ``walk`` in ``stages``), and the gate tests
    the coverage of the bands that would be served there."""
    stages = stages or Stages()
    with stages("register"), sessions() as session:
        current = registry.champion(session, exchange, symbol, trained.timeframe)
        current_id = current.id if current else None
        start = _time(trained.data_range.get("test_start"))
        champion = (
            score_on_window(load_trained(session, current, served=False), frame, start)
            if current
            else None
        )
    refresh = trained.kind == "fine_tune" and current_id is not None and parent_id == current_id
    candidate, walk = WindowScore.of(trained.metrics.get("test")), None
    if candidate is not None and candidate.winkler95 is not None and not refresh:
        untested = dataclasses.replace(candidate, n=0)  # no days: its coverage is not tested
        if gate(untested, champion).promote:  # only then does the walk decide, worth its cost
            with stages("walk"):
                walk = walk_scores(trained, frame)
    decision = gate(candidate, champion, refresh, WindowScore.of(walk))
    return Verdict(decision, current_id, None if champion is None else champion.mape, walk)


def walk_scores(
    trained: TrainedModel, frame: pd.DataFrame, every: int = WALK_EVERY
) -> dict[str, Any]:
    """``trained``'s test window walked along the served path (`tasks.walk.served_walk`),
    scored as a part's metrics are: the point forecasts against persistence, and ``bands``
    (``model``: per horizon), with the walk's step in days, fine-tunes and seconds."""
    walk = served_walk(trained, frame, every)
    bands = walk.band_scores(frame["close"].to_numpy(dtype=float))
    return {
        **walk.metrics(),
        "bands": {"model": bands} if bands is not None else None,
        "every_days": every,
        "fine_tunes": walk.fine_tunes,
        "seconds": walk.seconds,
    }


def store(
    sessions: sessionmaker[Session],
    trained: TrainedModel,
    verdict: Verdict,
    *,
    exchange: str,
    symbol: str,
    parent_id: int | None = None,
    ingest_run_id: int | None = None,
    flow_run_id: str | None = None,
) -> ModelVersion:
    """Store ``trained`` (with its served twin, where it has one) as the next version of its
    series in one write transaction, and make it champion if ``verdict`` says so. A champion
    that changed since the verdict is not overtaken blindly: the new version stays a
    candidate and says why."""
    candidate = new_version(
        trained,
        exchange=exchange,
        symbol=symbol,
        parent_id=parent_id,
        ingest_run_id=ingest_run_id,
        flow_run_id=flow_run_id,
        walk=verdict.walk,
    )
    decision = verdict.decision
    with sessions.begin() as session:
        version = registry.add_version(
            session,
            candidate,
            decision=decision.reason,
            champion_mape_same_window=verdict.champion_mape,
        )
        now_champion = registry.get_series(session, exchange, symbol, trained.timeframe)
        if decision.promote and now_champion and now_champion.champion_id == verdict.champion_id:
            registry.promote(session, version, decision.reason)
        elif decision.promote:
            version.decision = "champion changed while this version was scored; kept as candidate"
        elif verdict.champion_id is None and now_champion is not None:
            registry.set_note(
                session,
                now_champion.id,
                f"no version beats persistence yet (newest v{version.version}: "
                f"{decision.reason}); forecasts are not served",
            )
    return version


def forecast_rows(predicted: pd.DataFrame, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The forecast ``predicted`` from the newest candle of ``frame`` (`tasks.forecast.forecast`
    by the version's served twin, `TrainedModel.serving`): its closes with their bands, and
    beside them persistence (the newest close) with the naive band (`tasks.intervals`), and
    the number of bridged input candles, as rows for ``db.forecasts.save_forecasts``."""
    from tasks.intervals import BAND_EDGES, naive_quantiles

    horizon = len(predicted)
    as_of = frame.index[-1].to_pydatetime()
    closes = frame["close"].to_numpy(dtype=float)
    naive = naive_quantiles(closes, np.array([len(closes) - 1]), horizon, BAND_EDGES.values())[0]
    rows = []
    for (when, row), naive_edges in zip(predicted.iterrows(), naive, strict=True):
        edges = {name: _finite(row[name]) for name in BAND_EDGES}
        naive_band = {
            f"naive_{name}": _finite(v) for name, v in zip(BAND_EDGES, naive_edges, strict=True)
        }
        rows.append(
            {
                "as_of": as_of,
                "target_time": when.to_pydatetime(),
                "horizon": int(row.step),
                "predicted_close": float(row.close),
                "persistence_close": float(closes[-1]),
                "imputed_inputs": int(row.imputed_inputs),
                **edges,
                **naive_band,
            }
        )
    return rows


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
