"""One settings class for the whole project, read from ``CANDLECAST_*`` variables or ``.env``.

Per-run knobs (symbols, preset, horizon) are flow parameters, not settings. Reach the settings
through :func:`get_settings` so tests can change the environment and call
``get_settings.cache_clear()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CDD_BASE_URL = "https://www.cryptodatadownload.com/cdd"
PlotPolicy = Literal["all", "promoted", "none"]


class Settings(BaseSettings):
    """Configuration of candlecast; every field is ``CANDLECAST_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="CANDLECAST_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"), description="Where the SQLite file and reports live."
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL; default: a SQLite file under data_dir. Kept secret in output.",
    )
    database_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the database URL (with its "
        "password); used when CANDLECAST_DATABASE_URL is not set.",
    )
    cdd_base_url: str = Field(
        default=DEFAULT_CDD_BASE_URL,
        description="CDD base: https URL, an http(s) mirror, a local directory or file:// URL.",
    )
    http_connect_timeout_s: float = 10.0
    http_read_timeout_s: float = 60.0
    http_retries: int = Field(default=3, ge=0, le=10)
    http_backoff_s: float = Field(default=2.0, ge=0.0, description="First retry delay; doubles.")
    max_download_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    open_candle_volume_ratio: float = Field(
        default=0.15,
        gt=0.0,
        lt=1.0,
        description="A newest candle whose volume is below this share of the median of the "
        "previous ones is taken as still open (saved while its period was running) and dropped.",
    )
    jump_warning_ratio: float = Field(
        default=0.5, gt=0.0, description="Warn when a close moves more than this (0.5 = 50%)."
    )
    max_bad_row_share: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Bad rows (an impossible price, an unreadable value) are quarantined and "
        "the rest of the file stored, unless more than this share of its rows (at least one, "
        "at most 100) is bad: then the whole file is refused. 0 refuses any bad row.",
    )
    plots: PlotPolicy = Field(
        default="all",
        description="Which new versions get their plots (PNG files and a plots "
        "artifact): 'all', 'promoted' (a version that becomes the champion) or 'none'. With many "
        "symbols, plotting is about half of a next-day run's work (docs/benchmarks.md).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Dask scheduler (tcp://host:8786) for the daily fan-out; runner 'auto' then "
        "uses it. Unset: runner 'dask' starts a local cluster.",
    )

    @property
    def reports_dir(self) -> Path:
        """Where plots and run reports are written (``<data_dir>/reports``)."""
        return self.data_dir / "reports"

    def sqlalchemy_url(self) -> str:
        """The database URL in plain text, for the engine only; never log it."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.database_secret_block:
            from prefect.blocks.system import Secret

            return str(Secret.load(self.database_secret_block).get())
        return f"sqlite:///{(self.data_dir / 'candlecast.sqlite').as_posix()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
