"""The engine and the session factory, built once per database URL.

Functions in ``db/`` take a :class:`~sqlalchemy.orm.Session` and never commit; the caller owns
the transaction (``with session_factory().begin() as session:``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from candlecast.core.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A connection whose machine dies (power, network) sends no FIN, and PostgreSQL keeps its
# backend, with its advisory locks, row locks and open transaction, until TCP keepalive gives
# up on it: 2 h 11 min with Linux's defaults (7200 s idle, then 9 probes 75 s apart). A Dask
# cluster reruns a dead worker's symbol on another machine at once, and that rerun would wait
# as long on the ingest lock. So the server probes each candlecast connection after 30 s of
# silence, every 10 s, and drops it after 3 unanswered probes: about a minute. The client
# probes the server alike, so a query never waits on a database machine that died.
# (PostgreSQL ignores these on Unix sockets, which never outlive their machine.)
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 30,
    "tcp_keepalives_interval": 10,
    "tcp_keepalives_count": 3,
}
CLIENT_KEEPALIVES = {  # libpq's connection parameters
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def build_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys; folders made."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args=_postgres_connect_args(url))


def _postgres_connect_args(url: str) -> dict[str, Any]:
    """The keepalives above, where the URL does not set its own: its ``options`` come after
    ours (the later ``-c`` wins), its libpq ``keepalives*`` parameters are left alone."""
    query = make_url(url).query
    server = " ".join(f"-c {name}={value}" for name, value in SERVER_KEEPALIVES.items())
    theirs = query.get("options")
    options = f"{server} {theirs}" if isinstance(theirs, str) else server
    client = {k: v for k, v in CLIENT_KEEPALIVES.items() if k not in query}
    return {"options": options, **client}


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    return _cached_engine(url or get_settings().sqlalchemy_url())


@lru_cache(maxsize=16)
def _cached_engine(url: str) -> Engine:
    return build_engine(url)


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to the engine of ``url`` (default: the configured database)."""
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


def masked_url(url: str) -> str:
    """``url`` with its password hidden, safe for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)
