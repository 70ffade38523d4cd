"""The daily pipeline and the backfill, as Prefect flows."""

from __future__ import annotations

from datetime import UTC, date, datetime

from prefect import flow
from prefect.states import Failed

from db.migrate import require_head
from tasks.daily import Mode, SymbolOutcome, forecast_symbol
from tasks.parallel import Runner, fan_out
from tasks.report import publish_run_report

DEFAULT_SYMBOLS = ["BTCUSDT"]


@flow(name="daily-forecast")
def daily_forecast(
    symbols: list[str] | None = None,
    exchange: str = "Binance",
    mode: Mode = "auto",
    preset: str = "default",
    horizon: int = 7,
    runner: Runner = "auto",
    workers: int | None = None,
) -> list[SymbolOutcome]:
    """For each symbol: ingest, fine-tune or retrain, evaluate, register (champion gate),
    forecast with the champion and score earlier forecasts. A failing symbol does not lose the
    others' results; the run then ends Failed, naming each failed symbol and its cause.

    ``runner`` says where the symbols run (``tasks.parallel``): ``sequential``, ``processes``
    (``workers`` processes, default one per core), ``dask`` (``CANDLECAST_DASK_ADDRESS`` or a
    local cluster), or ``auto`` (Dask if an address is set, else processes for several
    symbols on more than 2 cores, else sequential: on 2 cores the pool costs more than it saves)."""
    require_head()
    outcomes: list[SymbolOutcome] = []
    failures: dict[str, str] = {}
    parameters = {"exchange": exchange, "mode": mode, "preset": preset, "horizon": horizon}
    states = fan_out(forecast_symbol, symbols or DEFAULT_SYMBOLS, parameters, runner, workers)
    for symbol, state in states.items():
        if state.is_completed():
            outcome = state.result()
            outcomes.append(outcome)
            if outcome.error:
                failures[symbol] = outcome.error
        else:
            failures[symbol] = _cause(state)
    publish_run_report(outcomes, failures)
    if failures:
        return Failed(message="; ".join(f"{s}: {c}" for s, c in failures.items()))
    return outcomes


@flow(name="backfill")
def backfill(
    symbol: str,
    start: date,
    end: date,
    exchange: str = "Binance",
    mode: Mode = "auto",
    preset: str = "default",
    horizon: int = 7,
) -> list[SymbolOutcome]:
    """The forecasts each day from ``start`` to ``end`` (inclusive) would have received, each
    from the candles up to that day only. Days already forecast are skipped (idempotent)."""
    from tasks.backfill import days_to_backfill

    require_head()
    outcomes = []
    for day in days_to_backfill(symbol, exchange, start, end):
        as_of = datetime(day.year, day.month, day.day, tzinfo=UTC)
        outcomes.append(
            forecast_symbol(
                symbol,
                exchange,
                mode=mode,
                preset=preset,
                horizon=horizon,
                as_of=as_of,
                ingest=False,
            )
        )
    publish_run_report(outcomes, {})
    return outcomes


def _cause(state: object) -> str:
    try:
        state.result()  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - the cause is what we report
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return getattr(state, "message", None) or "failed"
