"""What each run shows: Prefect artifacts and the same report as files for people without UI.

The flow run gets the summary and the forecast table; each symbol's task run gets its plots
(``plots-<exchange>-<symbol>``), made where the symbol ran: one artifact of every symbol's
plots at the end of the run would outgrow Prefect's event size limit within a few symbols.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from candlecast.core.settings import get_settings
from tasks.logs import current_flow_run_id, run_logger

if TYPE_CHECKING:
    from tasks.outcome import SymbolOutcome


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}%"


def summary_markdown(outcomes: list[SymbolOutcome], failures: dict[str, str]) -> str:
    """A markdown summary: a narrow table per symbol (action, version, champion, MAPE next to
    persistence, skill), then per symbol the decision, what was ingested and forecast, and its
    warnings; failed symbols with their cause."""
    lines = [
        "# candlecast daily run",
        "",
        "| symbol | as of | action | version | champion | MAPE | persistence | skill |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        champion = f"v{o.champion_version}" if o.champion_version else "persistence"
        skill = "n/a" if o.skill is None else f"{o.skill:+.4f}"
        made = f"v{o.version}" + (" promoted" if o.promoted else "") if o.version else "none"
        lines.append(
            f"| {o.symbol} | {o.as_of[:10]} | {o.action} | {made} | {champion} | "
            f"{_pct(o.test_mape)} | {_pct(o.persistence_mape)} | {skill} |"
        )
    done = {o.symbol for o in outcomes}
    lines += [f"| {s} | | **failed** | | | | | |" for s in failures if s not in done]
    for o in outcomes:
        ingested = (
            f"{o.ingest['inserted']} new, {o.ingest['updated']} updated" if o.ingest else "skipped"
        )
        lines += [
            "",
            f"## {o.symbol}",
            "",
            f"Decision: {o.decision}",
            "",
            f"- skill against persistence: {_significance(o)}",
            f"- candles: {ingested}",
            f"- forecasts: {len(o.forecasts)} ({o.forecasts_new} new), {o.scored} scored",
        ]
        if o.served:
            lines.append(
                f"- served bands, the last {o.served['n']} days at h=1: the 80% band covered "
                f"{o.served['cov80']:.1f}%, the 95% band {o.served['cov95']:.1f}%"
            )
        if o.plots:
            lines.append(f"- plots: artifact `{plots_key(o.exchange, o.symbol)}`")
        lines += [f"- warning: {w}" for w in o.warnings]
    for symbol, cause in failures.items():
        if symbol not in done:
            lines += ["", f"## {symbol}", "", f"Failed: {cause}"]
    return "\n".join(lines) + "\n"


def _significance(o: SymbolOutcome) -> str:
    """The skill next to its Diebold-Mariano p-value, so that a small one reads as chance."""
    if o.skill is None:
        return "n/a"
    if o.skill_p_value is None:
        return f"{o.skill:+.4f}"
    return f"{o.skill:+.4f} (Diebold-Mariano p = {o.skill_p_value:.2f})"


def price_decimals(price: float) -> int:
    """Decimals a price is quoted with (as CDD writes it, at most 8), and at least 2."""
    written = f"{price:.8f}".rstrip("0")
    return max(2, len(written) - written.index(".") - 1)


BAND_COLUMNS = ("low95", "low80", "high80", "high95")


def forecast_table(outcomes: list[SymbolOutcome]) -> list[dict[str, object]]:
    """The champions' forecasts and their bands (None without), each price quoted with the
    decimals of the last real close."""

    def price(value: float | None, decimals: int) -> float | None:
        return None if value is None else round(value, decimals)

    return [
        {
            "symbol": o.symbol,
            "version": o.champion_version,
            "as_of": str(row["as_of"])[:10],
            "horizon": row["horizon"],
            "target": str(row["target_time"])[:10],
            "predicted_close": price(row["predicted_close"], decimals),
            **{name: price(row.get(name), decimals) for name in BAND_COLUMNS},
            "persistence_close": row["persistence_close"],
        }
        for o in outcomes
        for row in o.forecasts
        for decimals in [price_decimals(row["persistence_close"])]
    ]


def plots_key(exchange: str, symbol: str) -> str:
    """The key of a symbol's plots artifact: Prefect keys are lowercase letters, digits and
    dashes, so ``Binance``/``BTCUSDT`` gives ``plots-binance-btcusdt``."""
    return re.sub(r"[^a-z0-9-]+", "-", f"plots-{exchange}-{symbol}".lower())


def plots_markdown(outcome: SymbolOutcome) -> str:
    """A symbol's plots inline (PNG as data URIs); the server's file paths stay out of it."""
    lines = [f"# {outcome.symbol} v{outcome.version}: plots", ""]
    for path in map(Path, outcome.plots):
        data = base64.b64encode(path.read_bytes()).decode()
        lines += [f"## {path.stem}", "", f"![{path.stem}](data:image/png;base64,{data})", ""]
    return "\n".join(lines)


def publish_plots(outcome: SymbolOutcome) -> None:
    """Attach a symbol's plots to the current Prefect run (its task run, in the flow run's
    Artifacts tab) as ``plots_key``: the key keeps the symbol's plots of every day. Nothing
    outside a Prefect run or without plots."""
    if not outcome.plots or current_flow_run_id() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        plots_markdown(outcome),
        key=plots_key(outcome.exchange, outcome.symbol),
        description=f"{outcome.symbol} v{outcome.version}: loss/MAPE per epoch; "
        "predicted vs actual",
    )


def publish_run_report(outcomes: list[SymbolOutcome], failures: dict[str, str]) -> Path:
    """Attach the summary and the forecast table to the current Prefect run (when there is
    one) and write the summary to the reports folder. Returns the summary file. (Each
    symbol's task attached its plots: ``publish_plots``.)"""
    summary = summary_markdown(outcomes, failures)
    reports = get_settings().reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    run_id = current_flow_run_id()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = reports / f"run-{stamp}{'-' + run_id[:8] if run_id else ''}.md"
    path.write_text(summary)
    if run_id is not None:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        create_markdown_artifact(summary, key="daily-summary", description="candlecast run summary")
        create_table_artifact(
            forecast_table(outcomes),
            key="daily-forecasts",
            description="forecasts made by the champions in this run",
        )
    run_logger().info("run report written to %s", path)
    return path
