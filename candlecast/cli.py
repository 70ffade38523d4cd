"""The ``candlecast`` command line. Quick commands call task functions directly (no Prefect
server needed); errors print one line naming the symbol and cause, tracebacks only with
``--debug``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from candlecast.errors import CandlecastError

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
        typer.echo(f"error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the configured database (CANDLECAST_DATABASE_URL) to the newest schema."""
    from candlecast.settings import get_settings
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


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
