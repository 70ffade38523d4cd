"""The logger of the current Prefect run, or a plain logger outside one (CLI, tests)."""

from __future__ import annotations

import logging
from typing import Any


def run_logger(name: str = "candlecast") -> logging.Logger | logging.LoggerAdapter[Any]:
    """Prefect's run logger inside a flow or task run, else ``logging.getLogger(name)``."""
    from prefect.context import FlowRunContext, TaskRunContext

    if TaskRunContext.get() or FlowRunContext.get():
        from prefect.logging import get_run_logger

        return get_run_logger()
    return logging.getLogger(name)


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run we are in, or None outside one."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None
