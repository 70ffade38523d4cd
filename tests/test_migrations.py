"""Alembic's migrations build exactly the schema in ``db.schema``, and go down and up again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db.migrate import alembic_config, current_revision, head_revision, upgrade
from db.schema import Base
from db.session import get_engine
from tests.conftest import scratch_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
        yield url
        get_engine(url).dispose()
        return
    with scratch_postgres_database("candlecast_migrations") as url:
        yield url
        get_engine(url).dispose()


def _differences(url: str) -> list[object]:
    with get_engine(url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_migrations_build_the_schema_of_the_code(empty_url: str) -> None:
    upgrade(empty_url)
    assert _differences(empty_url) == []


def test_the_newest_migration_goes_down_and_up_again(empty_url: str) -> None:
    upgrade(empty_url)
    config = alembic_config(get_engine(empty_url).url.render_as_string(hide_password=False))
    with get_engine(empty_url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert current_revision(empty_url) != head_revision()
    assert upgrade(empty_url) == head_revision()
    assert _differences(empty_url) == []
