"""Shared fixtures: databases (SQLite and PostgreSQL, for real), the CDD files, settings."""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from candlecast.core.settings import Settings, get_settings
from db.migrate import upgrade
from db.schema import Base
from db.session import get_engine

DATA = Path(__file__).parent / "data"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session", autouse=True)
def data_dir_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Whatever runs without settings of its own (the child processes of the fault tests, a
    flow reading the environment) writes its plots and reports to a temporary folder, never
    to the checkout's ``data/``."""
    path = tmp_path_factory.mktemp("data")
    before = os.environ.get("CANDLECAST_DATA_DIR")
    os.environ["CANDLECAST_DATA_DIR"] = str(path)
    get_settings.cache_clear()
    yield path
    if before is None:
        os.environ.pop("CANDLECAST_DATA_DIR", None)
    else:
        os.environ["CANDLECAST_DATA_DIR"] = before
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def cdd_dir() -> Path:
    """A folder of real CDD files (copied from shared/data/cryptodatadownload)."""
    return DATA


def _postgres_admin_url() -> str:
    return os.environ.get("CANDLECAST_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def postgres_unreachable() -> str | None:
    """Why no PostgreSQL server answers at the admin URL, or None when one does."""
    admin_url = _postgres_admin_url()
    admin = create_engine(admin_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server"
        return f"PostgreSQL not reachable at {make_url(admin_url).render_as_string()}: {exc}"
    finally:
        admin.dispose()
    return None


def require_postgres() -> None:
    """Skip with a message where no PostgreSQL server answers, unless CI=true: then fail."""
    if (message := postgres_unreachable()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason=message)


@contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named ``<prefix>_<random>``; dropped on leaving."""
    require_postgres()
    admin_url = _postgres_admin_url()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head; dropped after.

    Skips with a message where no server answers, unless CI=true: then the test fails.
    """
    with scratch_postgres_database("candlecast_test") as url:
        upgrade(url)
        yield url
        get_engine(url).dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is faster)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite"
    upgrade(f"sqlite:///{path}")
    get_engine(f"sqlite:///{path}").dispose()
    return path


def _truncate_all(url: str) -> None:
    engine = get_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_db(tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """An empty, migrated SQLite file."""
    path = tmp_path / "candlecast.sqlite"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{path}"
    yield url
    get_engine(url).dispose()


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied."""
    _truncate_all(postgres_url)
    return postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty, migrated database: a SQLite file, and the session's PostgreSQL database."""
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "postgres_db")


def settings_for(url: str, cdd_base_url: str, data_dir: Path) -> Settings:
    """Settings on ``url`` and a CDD mirror, with instant retries and short timeouts."""
    return Settings(
        database_url=url,
        cdd_base_url=cdd_base_url,
        data_dir=data_dir,
        http_backoff_s=0.0,
        http_retries=2,
        http_read_timeout_s=2.0,
        http_connect_timeout_s=2.0,
    )


@pytest.fixture
def settings(db_url: str, cdd_dir: Path, tmp_path: Path) -> Settings:
    """Settings on the test database and the local CDD folder, with instant retries."""
    return settings_for(db_url, str(cdd_dir), tmp_path)


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1 (loopback only), any free port."""
    return ("127.0.0.1", 0)


def wavy_cdd_csv(symbol: str = "WAVEUSDT", days: int = 400, end: str = "2025-10-14") -> bytes:
    """A CDD-format daily file (banner, newest first) of a learnable price path: log returns
    follow a slow sine plus a little noise, so even a tiny LSTM beats persistence on it."""
    rng = np.random.default_rng(7)
    returns = 0.03 * np.sin(np.arange(days) / 2.0) + rng.normal(0, 0.002, days)
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[close[0]], close[:-1]])
    index = pd.date_range(end=end, periods=days, freq="D", tz="UTC")
    base, quote = symbol[:-4], symbol[-4:]
    lines = [
        "https://www.CryptoDataDownload.com",
        f"Unix,Date,Symbol,Open,High,Low,Close,Volume {base},Volume {quote},tradecount",
    ]
    for i in reversed(range(days)):
        high, low = max(open_[i], close[i]) * 1.01, min(open_[i], close[i]) * 0.99
        lines.append(
            f"{int(index[i].timestamp() * 1000)},{index[i]:%Y-%m-%d},{symbol},"
            f"{open_[i]:.6f},{high:.6f},{low:.6f},{close[i]:.6f},100,{100 * close[i]:.4f},50"
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="session")
def mirror_dir(cdd_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CDD files plus a synthetic, learnable WAVEUSDT file."""
    directory = tmp_path_factory.mktemp("mirror")
    for path in cdd_dir.glob("*.csv"):
        (directory / path.name).write_bytes(path.read_bytes())
    (directory / "Binance_WAVEUSDT_d.csv").write_bytes(wavy_cdd_csv())
    return directory


@pytest.fixture(scope="session")
def cdd_mirror(mirror_dir: Path) -> Iterator[str]:
    """The CDD files served over HTTP on 127.0.0.1, as a user's mirror would be."""
    handler = functools.partial(QuietHandler, directory=str(mirror_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (starting one takes seconds)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def prefect_env(
    prefect_harness: None, settings: Settings, cdd_mirror: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings for flows (read from the environment) on the test database and the mirror."""
    monkeypatch.setenv("CANDLECAST_DATABASE_URL", settings.sqlalchemy_url())
    monkeypatch.setenv("CANDLECAST_CDD_BASE_URL", cdd_mirror)
    monkeypatch.setenv("CANDLECAST_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CANDLECAST_HTTP_BACKOFF_S", "0")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
