"""The temporary Prefect server a run starts when no server is configured (``make run``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

TEMPORARY_SERVER_STARTUP_S = 180  # a first start migrates a new database: slow on busy cores
NO_TEMPORARY_SERVER = "Timed out while attempting to connect to ephemeral Prefect API server"


@contextmanager
def temporary_server() -> Iterator[None]:
    """Settings for the temporary Prefect server a run starts when none is configured.

    Its first start on a machine creates and migrates its database in PREFECT_HOME, which
    can outlast Prefect's 20 s start-up limit on two busy cores: the limit is raised unless
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS is set. Its telemetry service reports
    to Prefect over the internet (on a machine without it: an ERROR "Failed to send
    telemetry" in every run) and writes to that database as the server starts, where it can
    meet the server's own first writes ("database is locked"): a temporary server has no use
    for it, so it runs without, unless PREFECT_SERVER_ANALYTICS_ENABLED says otherwise.
    """
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if get_current_settings().api.url is not None:
        yield
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in os.environ:
        yield
        return
    with temporary_settings(
        {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: TEMPORARY_SERVER_STARTUP_S}
    ):
        yield


def no_temporary_server_hint() -> str:
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    seconds = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    return (
        f"the temporary Prefect server did not start within {seconds} s: run again (its "
        "first start builds its database), raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, "
        "or start a server (`prefect server start`) and set PREFECT_API_URL"
    )
