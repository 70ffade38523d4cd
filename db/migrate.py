"""Alembic migrations run from code, so `candlecast db upgrade` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.session import get_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Migrate the database at ``url`` (default: configured) to ``revision``; return the head."""
    engine = get_engine(url)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return current_revision(url) or ""


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the project always ships a migration
        raise RuntimeError("no Alembic migration found")
    return head


def require_head(url: str | None = None) -> None:
    """Raise a clear error unless the database is migrated to this code's newest revision."""
    from candlecast.core.errors import CandlecastError
    from db.session import masked_url

    current, head = current_revision(url), head_revision()
    if current != head:
        where = masked_url(get_engine(url).url.render_as_string(hide_password=False))
        raise CandlecastError(
            f"database {where} is at revision {current or 'none (empty)'}, this candlecast "
            f"needs {head}: run `candlecast db upgrade`"
        )
