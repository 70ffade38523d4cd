"""The ``candlecast`` command line. Quick commands call task functions directly (no Prefect
server needed); errors print one line naming the symbol and cause, tracebacks only with
``--debug``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer

from candlecast.core.errors import CandlecastError
from candlecast.tables import render
from candlecast.temporary_server import (
    NO_TEMPORARY_SERVER,
    no_temporary_server_hint,
    temporary_server,
)
from tasks.runners import Runner

app = typer.Typer(
    help="Daily CDD candles into SQL and an honest LSTM forecast.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")

T = TypeVar("T")
_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.INFO if verbose or debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Failures are printed once, as the one-line error below; -v shows the log as well.
    logging.getLogger("candlecast").setLevel(logging.INFO if verbose or debug else logging.CRITICAL)


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; turn any error into one line on stderr and exit status 1."""
    try:
        return action()
    except Exception as exc:
        if _state["debug"]:
            raise
        message = str(exc) if isinstance(exc, CandlecastError) else f"{type(exc).__name__}: {exc}"
        if "no such table" in message or "UndefinedTable" in message:
            message = "the database has no candlecast schema yet: run `candlecast db upgrade`"
        elif NO_TEMPORARY_SERVER in message:
            message = no_temporary_server_hint()
        typer.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the configured database (CANDLECAST_DATABASE_URL) to the newest schema."""
    from candlecast.core.settings import get_settings
    from db.migrate import upgrade
    from db.session import masked_url

    url = get_settings().sqlalchemy_url()
    reached = _guarded(lambda: upgrade(url, revision))
    typer.echo(f"database {masked_url(url)} is at revision {reached}")


@app.command()
def ingest(
    symbol: Annotated[
        list[str], typer.Option("--symbol", "-s", help="Pair as CDD names it; repeat for more.")
    ] = ["BTCUSDT"],  # noqa: B006 - typer reads the default, nobody mutates it
    exchange: Annotated[str, typer.Option(help="Exchange as CDD names it.")] = "Binance",
    timeframe: Annotated[str, typer.Option(help="d (daily) or 1h (hourly).")] = "d",
) -> None:
    """Download CDD candle files and upsert them; one summary line per symbol."""
    from tasks.ingest import ingest_symbol

    failed = 0
    for name in symbol:
        try:
            result = _guarded(lambda name=name: ingest_symbol.fn(name, exchange, timeframe))
        except typer.Exit:
            failed += 1
            continue
        typer.echo(result.line())
    if failed:
        raise typer.Exit(1)


@app.command("run")
def run_daily(
    symbol: Annotated[
        list[str], typer.Option("--symbol", "-s", help="Pair as CDD names it; repeat for more.")
    ] = ["BTCUSDT"],  # noqa: B006 - typer reads the default, nobody mutates it
    exchange: Annotated[str, typer.Option(help="Exchange as CDD names it.")] = "Binance",
    mode: Annotated[
        Literal["auto", "fine_tune", "retrain"], typer.Option(help="auto, fine_tune or retrain.")
    ] = "auto",
    preset: Annotated[str, typer.Option(help="Model preset: default, lecture, tiny.")] = "default",
    horizon: Annotated[int, typer.Option(min=1, max=60, help="Days ahead to forecast.")] = 7,
    runner: Annotated[
        Runner,
        typer.Option(
            help="Where the symbols run: auto, sequential, processes, dask or deployments "
            "(README 'Scaling out')."
        ),
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes for processes/dask (default: one per core)."),
    ] = None,
) -> None:
    """Run the daily pipeline once (a Prefect flow run) and print the forecasts."""
    from flows.daily import daily_forecast
    from tasks.report import BAND_COLUMNS, forecast_table, summary_markdown

    with temporary_server():
        state = _guarded(
            lambda: daily_forecast(
                symbols=symbol,
                exchange=exchange,
                mode=mode,
                preset=preset,
                horizon=horizon,
                runner=runner,
                workers=workers or 0,
                return_state=True,
            )
        )
    outcomes = state.result(raise_on_failure=False)  # a failed run keeps the others' outcomes
    if isinstance(outcomes, list) and outcomes:
        typer.echo(summary_markdown(outcomes, {}).split("\n## ")[0].rstrip())
        typer.echo("")
        for outcome in outcomes:  # what the table cannot say: why, e.g. no new candle
            typer.echo(f"{outcome.symbol}: {outcome.decision}")
        rows = forecast_table(outcomes)
        columns = ["symbol", "version", "as_of", "horizon", "target", "predicted_close"]
        columns += [*BAND_COLUMNS, "persistence_close"]
        typer.echo("")
        typer.echo(render(rows, columns, "table", empty="no forecasts: see the warnings above"))
        for outcome in outcomes:
            for warning in outcome.warnings:
                typer.echo(f"warning: {warning}", err=True)
    if not state.is_completed():
        typer.echo(f"error: {state.message}", err=True)
        raise typer.Exit(1)


def _json_object(value: str | None) -> dict[str, Any] | None:
    """A ``--parameters`` value as a dict (None when not given)."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--parameters is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter('--parameters must be a JSON object, e.g. {"preset": "tiny"}')
    return parsed


@app.command()
def serve(
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", "-d", help="Only these (daily, symbol, backfill)."),
    ] = None,
    parameters: Annotated[
        str | None,
        typer.Option(
            envvar="CANDLECAST_SERVE_PARAMETERS",
            help="JSON object over prefect.yaml's default parameters, e.g. "
            '\'{"symbols": ["ETHUSDT"], "preset": "tiny", "horizon": 2}\'; '
            "a key reaches each deployment whose flow takes it.",
        ),
    ] = None,
) -> None:
    """Serve the deployments of prefect.yaml against the Prefect server (PREFECT_API_URL)."""
    from candlecast.serve import serve as serve_deployments

    overrides = _json_object(parameters)
    _guarded(lambda: serve_deployments(deployment or None, parameters=overrides))


@app.command("detect-crashes")
def detect_crashes(
    within: Annotated[
        float | None,
        typer.Option(
            help="Seconds without a heartbeat or final state before a run is set Crashed "
            "(default: 3 heartbeat intervals, PREFECT_FLOWS_HEARTBEAT_FREQUENCY).",
        ),
    ] = None,
) -> None:
    """Have the Prefect server (PREFECT_API_URL) set candlecast's flow runs Crashed once they
    stop sending heartbeats: their machine died. Run it again to change --within."""
    from candlecast.crashes import FLOWS, enable_crash_detection

    automation, new = _guarded(lambda: enable_crash_detection(within))
    seconds = automation.trigger.within.total_seconds()  # type: ignore[union-attr]
    typer.echo(
        f"automation {automation.name!r} {'created' if new else 'updated'}: runs of "
        f"{', '.join(FLOWS)} with no heartbeat for {seconds:g} s are set Crashed"
    )


models_app = typer.Typer(
    help="Model versions: list them (champion marked), prune old bytes.",
    invoke_without_command=True,
)
app.add_typer(models_app, name="models")
Format = Literal["table", "csv", "json"]


@models_app.callback()
def models_list(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this pair.")] = None,
    output: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """List model versions with their test metrics; * marks each series' champion."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _view("model_leaderboard", symbol, ("exchange", "symbol", "timeframe", "version"))
    columns = [
        "symbol",
        "timeframe",
        "version",
        "is_champion",
        "kind",
        "parent_version",
        "preset",
        "created_at",
        "test_mape",
        "test_persistence_mape",
        "test_skill",
        "decision",
    ]
    for row in rows:
        row["is_champion"] = "*" if row["is_champion"] else ""
    typer.echo(render(rows, columns, output, empty="no model versions yet"))


@models_app.command("prune")
def models_prune(
    keep: Annotated[int, typer.Option(help="Newest versions per series whose bytes are kept.")],
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this pair.")] = None,
) -> None:
    """Delete the bytes of old versions; never a champion, a former champion, or a version that
    forecasts point to. Says what it removed."""
    from db import registry
    from db.session import session_factory

    def run() -> list[tuple[str, int, int]]:
        with session_factory().begin() as session:
            return [
                (v.symbol, v.version, v.size_bytes)
                for v in registry.prune(session, keep, _symbol(symbol))
            ]

    pruned = _guarded(run)
    for name, number, size in pruned:
        typer.echo(f"pruned {name} v{number} ({size} bytes)")
    typer.echo(f"{len(pruned)} version(s) pruned, {sum(p[2] for p in pruned)} bytes freed")


@app.command()
def forecasts(
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="Only this pair.")] = None,
    output: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """The champions' latest forecasts with their 80% and 95% bands (and a line for each series
    without a champion)."""
    rows = _view("latest_forecasts", symbol, ("exchange", "symbol", "timeframe", "horizon"))
    columns = [
        "symbol",
        "timeframe",
        "version",
        "as_of",
        "horizon",
        "target_time",
        "predicted_close",
        "low95",
        "low80",
        "high80",
        "high95",
        "persistence_close",
        "imputed_inputs",
    ]
    typer.echo(render(rows, columns, output, empty="no forecasts yet"))
    if output == "table":
        for status in _view("series_status", symbol, ("symbol",)):
            if status["note"]:
                typer.echo(f"{status['symbol']}: {status['note']}", err=True)


def _symbol(symbol: str | None) -> str | None:
    from candlecast.core.identifiers import check_symbol

    return None if symbol is None else _guarded(lambda: check_symbol(symbol))


def _view(name: str, symbol: str | None, order: tuple[str, ...]) -> list[dict[str, Any]]:
    from db import registry
    from db.session import session_factory

    checked = _symbol(symbol)

    def read() -> list[dict[str, Any]]:
        with session_factory()() as session:
            return registry.view_rows(session, name, checked, order)

    return _guarded(read)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
