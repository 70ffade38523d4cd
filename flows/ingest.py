"""The ingest flow: one ``ingest-symbol`` task per symbol, the same code the CLI runs."""

from __future__ import annotations

from prefect import flow
from prefect.futures import wait

from db.migrate import require_head
from tasks.ingest import IngestResult, ingest_symbol


@flow(name="ingest", log_prints=True)
def ingest(
    symbols: list[str] | None = None, exchange: str = "Binance", timeframe: str = "d"
) -> list[IngestResult]:
    """Ingest each symbol's CDD file; a failing symbol does not stop the others.

    The flow run fails after all symbols ran if any of them failed, naming each.

    Args:
        symbols: Pairs as CDD names them, e.g. BTCUSDT, ETHUSDT (empty: BTCUSDT).
        exchange: Exchange as CDD names it in its file names: Binance, Gemini, Bitstamp, ...
        timeframe: d for daily candles, 1h for hourly ones.
    """
    require_head()
    futures = [ingest_symbol.submit(s, exchange, timeframe) for s in symbols or ["BTCUSDT"]]
    wait(futures)
    failed = [f for f in futures if f.state.is_failed()]
    results = [f.result() for f in futures if not f.state.is_failed()]
    for result in results:
        print(result.line())
    if failed:
        causes = "; ".join(str(f.result(raise_on_failure=False)) for f in failed)
        raise RuntimeError(f"{len(failed)} of {len(futures)} symbols failed: {causes}")
    return results
