"""The daily pipeline, one symbol of it, and the backfill, as Prefect flows."""

from __future__ import annotations

from datetime import UTC, date, datetime

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Failed

from db.migrate import require_head
from tasks.daily import forecast_symbol
from tasks.logs import run_logger
from tasks.outcome import Mode, SymbolOutcome
from tasks.report import publish_run_report
from tasks.runners import Runner, fan_out

DEFAULT_SYMBOLS = ["BTCUSDT"]


@flow(name="daily-forecast")
def daily_forecast(
    symbols: list[str] | None = None,
    exchange: str = "Binance",
    mode: Mode = "auto",
    preset: str = "default",
    horizon: int = 7,
    runner: Runner = "auto",
    workers: int = 0,
) -> list[SymbolOutcome]:
    """For each symbol: ingest, fine-tune or retrain, evaluate, register (champion gate),
    forecast with the champion and score earlier forecasts. A failing symbol does not lose the
    others' results; the run then ends Failed, naming each failed symbol and its cause, and
    its state still holds the outcomes of the symbols that completed.

    Args:
        symbols: Pairs as CDD names them, e.g. BTCUSDT, ETHUSDT (empty: BTCUSDT).
        exchange: Exchange as CDD names it in its file names: Binance, Gemini, Bitstamp, ...
        mode: auto fine-tunes the champion on new candles and retrains when the policy says
            so; fine_tune and retrain force one (with no new candle, only retrain trains).
        preset: Model preset: default (the product's), lecture (the lecture's recipe), tiny.
        horizon: Days ahead to forecast, 1 to 60.
        runner: Where the symbols run: sequential, processes, dask (CANDLECAST_DASK_ADDRESS
            or a local cluster), deployments (one flow run per symbol on the work pool), or
            auto (Dask if an address is set, else processes for several symbols on more than
            2 cores, else sequential).
        workers: Processes or Dask workers for the processes and dask runners; 0 is one per
            core.
    """
    require_head()
    outcomes: list[SymbolOutcome] = []
    failures: dict[str, str] = {}
    parameters = {"exchange": exchange, "mode": mode, "preset": preset, "horizon": horizon}
    symbols = symbols or DEFAULT_SYMBOLS
    states = fan_out(forecast_symbol, symbols, parameters, runner, workers or None)
    for symbol, state in states.items():
        outcome, cause = _outcome_and_cause(symbol, state)
        if outcome is not None:
            outcomes.append(outcome)
        if cause is not None:
            failures[symbol] = cause
    publish_run_report(outcomes, failures)
    if failures:  # the symbols that did complete stay readable: state.result() gives them
        named = (c if c.startswith(f"{s}: ") else f"{s}: {c}" for s, c in failures.items())
        return Failed(message="; ".join(named), data=outcomes)
    return outcomes


@flow(
    name="forecast-symbol",
    flow_run_name="forecast {exchange} {symbol}",
    persist_result=True,
    result_serializer="json",
)
def forecast_one(
    symbol: str,
    exchange: str = "Binance",
    mode: Mode = "auto",
    preset: str = "default",
    horizon: int = 7,
) -> SymbolOutcome:
    """The daily step for one symbol as a flow run of its own: ``daily_forecast`` with
    ``runner="deployments"`` starts one per symbol on the work pool. It ends Failed with the
    cause when the symbol failed. Its outcome (also a failed symbol's, when the champion still
    forecast) is persisted as JSON in Prefect's result storage, where the parent reads it.

    Args:
        symbol: Pair as CDD names it, e.g. BTCUSDT.
        exchange: Exchange as CDD names it in its file names: Binance, Gemini, Bitstamp, ...
        mode: auto fine-tunes the champion on new candles and retrains when the policy says
            so; fine_tune and retrain force one (with no new candle, only retrain trains).
        preset: Model preset: default (the product's), lecture (the lecture's recipe), tiny.
        horizon: Days ahead to forecast, 1 to 60.
    """
    require_head()
    state = forecast_symbol(
        symbol, exchange, mode=mode, preset=preset, horizon=horizon, return_state=True
    )
    outcome, cause = _outcome_and_cause(symbol, state)
    publish_run_report([outcome] if outcome else [], {symbol: cause} if cause else {})
    if cause is not None:
        return Failed(message=cause, data=outcome)
    return outcome


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
    from the candles up to that day only. Days already forecast are skipped (idempotent).

    Args:
        symbol: Pair as CDD names it, e.g. BTCUSDT; its candles must be stored already.
        start: First day to forecast from (UTC).
        end: Last day to forecast from (UTC), inclusive.
        exchange: Exchange as CDD names it in its file names: Binance, Gemini, Bitstamp, ...
        mode: auto fine-tunes the champion on new candles and retrains when the policy says
            so; fine_tune and retrain force one (with no new candle, only retrain trains).
        preset: Model preset: default (the product's), lecture (the lecture's recipe), tiny.
        horizon: Days ahead to forecast, 1 to 60.
    """
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


def _outcome_and_cause(symbol: str, state: State) -> tuple[SymbolOutcome | None, str | None]:
    """What one symbol's final state says: its outcome where one can be read, and its cause
    where it failed (``outcome.error``, the exception, else the state's message).

    ``state`` is a task run's, or a symbol flow run's read from the API; that flow run's
    outcome lies in Prefect's result storage, readable here only where this machine shares it
    (docs/scaling.md); else the state and its message are all there is.
    """
    try:
        value = state.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - result storage not shared with this machine
        run_logger().warning("%s: its outcome cannot be read here: %s", symbol, exc)
        value = None
    outcome = value if isinstance(value, SymbolOutcome) else None
    if outcome is not None and outcome.error:
        return outcome, outcome.error
    if state.is_completed():
        return outcome, None
    if isinstance(value, BaseException):
        return outcome, str(value).splitlines()[0] if str(value) else type(value).__name__
    return outcome, state.message or "failed"
