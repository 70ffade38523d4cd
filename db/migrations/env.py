"""Alembic environment: runs on the connection handed over by :func:`db.migrate.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from db.schema import Base
from db.session import build_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # plain `alembic` command line: use the configured URL
    with build_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
        _run(conn)
