"""What the daily step did for one symbol: the type the step, the flows, the report and the
CLI share, kept below them all."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Mode = Literal["auto", "fine_tune", "retrain"]


@dataclass
class SymbolOutcome:
    """What the daily step did for one symbol; the run summary is made of these."""

    exchange: str
    symbol: str
    timeframe: str
    as_of: str
    rows: int
    ingest: dict[str, Any] | None
    action: str  # retrain | fine_tune | rejected | kept (no new candle: no new version)
    decision: str
    version: int | None = None
    promoted: bool = False
    champion_version: int | None = None
    test_mape: float | None = None
    persistence_mape: float | None = None
    skill: float | None = None
    skill_p_value: float | None = None  # Diebold-Mariano against persistence on the test part
    train_seconds: float = 0.0
    forecasts: list[dict[str, Any]] = field(default_factory=list)
    forecasts_new: int = 0
    scored: int = 0
    served: dict[str, Any] | None = None  # the served bands' realised coverage (tasks.daily)
    plots: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # why the step failed (the run names it): rejected, or no forecast
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "task"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
