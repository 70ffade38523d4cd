"""Ingest one CDD file: fetch, parse, validate, upsert; every download recorded.

:func:`ingest_symbol` is the one code path used by the CLI (``ingest_symbol.fn``, no Prefect
server needed) and by the Prefect flows (as a task).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prefect import task
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from candlecast.core.errors import SymbolError
from candlecast.core.identifiers import Series, label
from candlecast.core.settings import Settings, get_settings
from candlecast.core.urls import public_url
from db.locks import named_lock
from db.queries import (
    finish_ingest_run,
    replace_rejected_candles,
    start_ingest_run,
    upsert_candles,
)
from db.session import session_factory
from tasks.cdd import BadRow, parse_cdd_csv
from tasks.fetch import Download, cdd_url, fetch
from tasks.logs import current_flow_run_id, run_logger
from tasks.timing import Stages
from tasks.validate import ValidatedCandles, quarantine, validate_candles


@dataclass
class IngestResult:
    """What one ingest did; ``line()`` is the summary printed by the CLI."""

    exchange: str
    symbol: str
    timeframe: str
    run_id: int
    rows_parsed: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    first: datetime | None = None
    last: datetime | None = None
    missing: list[str] = field(default_factory=list)
    dropped_open: list[str] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    quarantined: int = 0  # bad rows left out of the candles, kept in rejected_candles

    def line(self) -> str:
        first, last, timeframe = self.first, self.last, self.timeframe
        span = f"{label(first, timeframe)}..{label(last, timeframe)}" if first and last else "empty"
        notes = "; ".join(str(w["message"]) for w in self.warnings if w["kind"] != "missing")
        return (
            f"{self.exchange} {self.symbol} {self.timeframe}: {self.rows_parsed} rows parsed, "
            f"{self.inserted} inserted, {self.updated} updated, {span}, "
            f"{len(self.missing)} missing"
            + (f", {self.quarantined} quarantined" if self.quarantined else "")
            + (f"; warnings: {notes}" if notes else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="ingest-symbol", task_run_name="ingest {exchange} {symbol} {timeframe}")
def ingest_symbol(
    symbol: str,
    exchange: str = "Binance",
    timeframe: str = "d",
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """Download, parse, validate and upsert one CDD file; record the attempt in ``ingest_runs``.

    The candles and the run's success record commit in one transaction; on any error nothing
    of the candles is written, the run is recorded as failed with the cause, and the error is
    raised again (its message starts with the symbol). Two ingests of the same series never run
    at once, on any machine sharing the database: the second waits for the first
    (``db.locks.named_lock``), then finds its candles stored and writes nothing new.
    """
    settings = settings or get_settings()
    exchange, symbol, timeframe = Series.checked(exchange, symbol, timeframe)
    log = run_logger()
    url = settings.sqlalchemy_url()

    def waiting() -> None:
        log.info(
            "%s: another ingest of %s %s is running; waiting for it", symbol, exchange, timeframe
        )

    with named_lock(url, f"ingest:{exchange}:{symbol}:{timeframe}", on_wait=waiting):
        return _ingest(symbol, exchange, timeframe, settings, now or datetime.now(UTC))


def _ingest(
    symbol: str, exchange: str, timeframe: str, settings: Settings, now: datetime
) -> IngestResult:
    log = run_logger()
    stages = Stages()
    url = cdd_url(settings.cdd_base_url, exchange, symbol, timeframe)
    sessions = session_factory(settings.sqlalchemy_url())
    with sessions.begin() as session:
        run_id = start_ingest_run(
            session,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            url=public_url(url),
            flow_run_id=current_flow_run_id(),
        ).id
    download = None
    try:
        with stages("fetch"):
            download = fetch(
                url,
                symbol=symbol,
                connect_timeout_s=settings.http_connect_timeout_s,
                read_timeout_s=settings.http_read_timeout_s,
                retries=settings.http_retries,
                backoff_s=settings.http_backoff_s,
                max_bytes=settings.max_download_bytes,
            )
        log.info("%s: downloaded %d bytes (sha256 %s)", symbol, download.size, download.sha256[:12])
        with stages("parse_validate"):
            checked = _check(download.content, symbol, timeframe, settings, now)
        with stages("upsert"), sessions.begin() as session:
            result = _store(
                session, checked, download, IngestResult(exchange, symbol, timeframe, run_id)
            )
    except Exception as exc:
        _record_failure(sessions, run_id, exc, download)
        log.error("%s", exc if isinstance(exc, SymbolError) else f"{symbol}: {exc!r}")
        raise
    result = replace(result, timings=stages.seconds)
    for warning in result.warnings:  # each at WARNING, so that the UI's level filter finds it
        log.warning("%s: %s", symbol, warning["message"])
    log.info("%s", result.line())
    return result


@dataclass(frozen=True)
class _Checked:
    """A parsed and validated file: the candles to store, the rows to quarantine, the warnings."""

    rows_read: int
    validated: ValidatedCandles
    bad_rows: list[BadRow]
    warnings: list[dict[str, Any]]


def _check(
    content: bytes, symbol: str, timeframe: str, settings: Settings, now: datetime
) -> _Checked:
    parsed = parse_cdd_csv(content, symbol=symbol, timeframe=timeframe)
    validated = validate_candles(
        parsed.frame,
        symbol=symbol,
        timeframe=timeframe,
        now=now,
        open_volume_ratio=settings.open_candle_volume_ratio,
        jump_ratio=settings.jump_warning_ratio,
    )
    bad_rows, notes = quarantine(
        parsed, validated, symbol=symbol, timeframe=timeframe, max_share=settings.max_bad_row_share
    )
    warnings = parsed.warnings + validated.warnings + notes
    return _Checked(parsed.rows_read, validated, bad_rows, warnings)


def _store(
    session: Session, checked: _Checked, download: Download, run: IngestResult
) -> IngestResult:
    """Upsert the candles, replace the rejected ones and record the success of ``run`` (a
    result naming only its series and run id), all in ``session``'s transaction."""
    frame = checked.validated.frame
    series = {"exchange": run.exchange, "symbol": run.symbol, "timeframe": run.timeframe}
    counts = upsert_candles(session, frame, **series, ingest_run_id=run.run_id)
    rejected = [asdict(row) for row in checked.bad_rows]
    replace_rejected_candles(session, rejected, **series, ingest_run_id=run.run_id)
    result = replace(
        run,
        rows_parsed=checked.rows_read,
        inserted=counts.inserted,
        updated=counts.updated,
        unchanged=counts.unchanged,
        first=frame.index[0].to_pydatetime() if len(frame) else None,
        last=frame.index[-1].to_pydatetime() if len(frame) else None,
        missing=checked.validated.missing,
        dropped_open=checked.validated.dropped_open,
        warnings=checked.warnings,
        quarantined=len(rejected),
    )
    finish_ingest_run(
        session,
        run.run_id,
        status="success",
        finished_at=datetime.now(UTC),
        http_status=download.http_status,
        sha256=download.sha256,
        bytes=download.size,
        rows_parsed=result.rows_parsed,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        first_candle=result.first,
        last_candle=result.last,
        missing_count=len(result.missing),
        warnings=result.warnings,
    )
    return result


def _record_failure(
    sessions: sessionmaker[Session], run_id: int, exc: Exception, download: Download | None
) -> None:
    cause = exc.cause if isinstance(exc, SymbolError) else f"{type(exc).__name__}: {exc}"
    try:
        with sessions.begin() as session:
            finish_ingest_run(
                session,
                run_id,
                status="failed",
                finished_at=datetime.now(UTC),
                error=cause,
                http_status=download.http_status if download else None,
                sha256=download.sha256 if download else None,
                bytes=download.size if download else None,
            )
    except SQLAlchemyError:  # the database itself failed: the original error says more
        run_logger().exception("could not record the failure of ingest run %s", run_id)
