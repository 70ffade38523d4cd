"""Ingest speed: parse + validate + upsert of the hourly BTC file on SQLite and PostgreSQL.

    .venv/bin/python -m bench.ingest [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]

For each database (a fresh SQLite file; a scratch PostgreSQL database created and dropped on
the server of ``--postgres``): the first ingest of ``Binance_BTCUSDT_1h.csv`` through
``tasks.ingest.ingest_symbol`` (the code the CLI and the flows run: read, parse, validate,
upsert, ingest-run bookkeeping, the series lock), then a re-ingest of the unchanged file
(must write nothing), then the naive baseline: the same validated rows appended with
``pandas.DataFrame.to_sql`` into an empty table. Candles/s = distinct candles / seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.data import SHARED
from candlecast.core.settings import Settings
from db.migrate import upgrade
from db.session import get_engine
from tasks.cdd import parse_cdd_csv
from tasks.ingest import ingest_symbol
from tasks.validate import validate_candles

FILE = SHARED / "Binance_BTCUSDT_1h.csv"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``admin_url``; dropped after."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"candlecast_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ingest(url: str, data_dir: Path) -> tuple[float, object]:
    settings = Settings(database_url=url, cdd_base_url=str(SHARED), data_dir=data_dir)
    began = time.perf_counter()
    result = ingest_symbol.fn("BTCUSDT", "Binance", "1h", settings=settings)
    return time.perf_counter() - began, result


def _naive(url: str) -> tuple[float, float]:
    """(seconds for parse + validate + to_sql append, seconds of the to_sql alone)."""
    began = time.perf_counter()
    parsed = parse_cdd_csv(FILE.read_bytes(), symbol="BTCUSDT", timeframe="1h")
    frame = validate_candles(
        parsed.frame, symbol="BTCUSDT", timeframe="1h", now=datetime.now(UTC)
    ).frame
    rows = frame.reset_index().assign(exchange="Binance", symbol="BTCUSDT", timeframe="1h")
    written = time.perf_counter()
    engine = get_engine(url)
    rows.to_sql("candles_naive", engine, if_exists="append", index=False, chunksize=2000)
    done = time.perf_counter()
    return done - began, done - written


def measure(label: str, url: str, data_dir: Path) -> dict[str, float | str]:
    upgrade(url)
    first_s, first = _ingest(url, data_dir)
    again_s, again = _ingest(url, data_dir)
    naive_s, naive_write_s = _naive(url)
    candles = first.inserted + first.updated + first.unchanged
    return {
        "db": label,
        "candles": candles,
        "first_s": first_s,
        "first_inserted": first.inserted,
        "parse_validate_s": first.timings["parse_validate"],
        "upsert_s": first.timings["upsert"],
        "again_s": again_s,
        "again_inserted": again.inserted,
        "again_updated": again.updated,
        "again_upsert_s": again.timings["upsert"],
        "naive_s": naive_s,
        "naive_write_s": naive_write_s,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of a server")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure("sqlite", f"sqlite:///{tmp}/bench.sqlite", Path(tmp)))
        with scratch_postgres(args.postgres) as url:
            rows.append(measure("postgresql", url, Path(tmp)))
    print(f"{FILE.name}: {rows[0]['candles']} distinct candles; seconds wall, candles/s")
    print(
        f"{'db':<11} {'first ingest':>19} {'(parse+val / upsert)':>21} {'re-ingest':>19} "
        f"{'written again':>14} {'to_sql baseline':>19} {'(to_sql alone)':>15}"
    )
    for r in rows:
        n = r["candles"]
        print(
            f"{r['db']:<11} {r['first_s']:7.2f} s {n / r['first_s']:7.0f}/s "
            f"{r['parse_validate_s']:9.2f} / {r['upsert_s']:5.2f} s "
            f"{r['again_s']:7.2f} s {n / r['again_s']:7.0f}/s "
            f"{r['again_inserted']:>5} + {r['again_updated']:<5}  "
            f"{r['naive_s']:7.2f} s {n / r['naive_s']:7.0f}/s {r['naive_write_s']:11.2f} s"
        )
    s, p = rows
    print(
        "RESULT "
        f"candles={s['candles']} sqlite_first_s={s['first_s']:.3f} "
        f"sqlite_reingest_s={s['again_s']:.3f} "
        f"sqlite_reingest_written={s['again_inserted'] + s['again_updated']} "
        f"sqlite_to_sql_s={s['naive_s']:.3f} postgres_first_s={p['first_s']:.3f} "
        f"postgres_reingest_s={p['again_s']:.3f} "
        f"postgres_reingest_written={p['again_inserted'] + p['again_updated']} "
        f"postgres_to_sql_s={p['naive_s']:.3f} "
        f"sqlite_candles_per_s={s['candles'] / s['first_s']:.0f} "
        f"postgres_candles_per_s={p['candles'] / p['first_s']:.0f}"
    )


if __name__ == "__main__":
    main()
