"""Serve the deployments declared in ``prefect.yaml`` from this process (``candlecast serve``).

``prefect.yaml`` stays the one description of the deployments, read the way ``prefect deploy``
reads it: Prefect's own model of the file (``PrefectYamlModel``) and its own conversion of a
schedule entry (cron, interval or rrule). Both live in Prefect's CLI package, which has no
public loader that returns served deployments; ``tests/e2e/test_server.py`` serves every entry
of the file, so a Prefect release that moves them fails there, not in production.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "prefect.yaml"


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """The flow object named by ``flows/file.py:function`` (imported as a module)."""
    path, _, name = entrypoint.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = getattr(module, name, None)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


def deployments(
    path: Path = PREFECT_YAML,
    names: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> list[RunnerDeployment]:
    """The deployments of ``prefect.yaml`` (or those in ``names``) as served deployments.

    ``parameters`` override the default parameters of each deployment whose flow takes them
    (``symbols`` reaches ``daily`` only, ``preset`` every one); one that no flow takes is an
    error.
    """
    spec = PrefectYamlModel.model_validate(yaml.safe_load(path.read_text()))
    chosen = [d for d in spec.deployments if not names or d.name in names]
    flows = [(entry, _flow(entry)) for entry in chosen]
    taken = {name for _, flow in flows for name in flow.parameters.properties}
    unknown = sorted(set(parameters or {}) - taken)
    if unknown:
        raise ValueError(f"no served flow takes the parameter(s) {', '.join(unknown)}")
    return [_served(entry, flow, parameters or {}) for entry, flow in flows]


def _flow(entry: DeploymentConfig) -> Flow[Any, Any]:
    if entry.entrypoint is None:
        raise ValueError(f"deployment {entry.name} in prefect.yaml has no entrypoint")
    return load_flow(entry.entrypoint)


def _served(
    entry: DeploymentConfig, flow: Flow[Any, Any], parameters: dict[str, Any]
) -> RunnerDeployment:
    """One entry of ``prefect.yaml`` as a served deployment, the ``parameters`` its flow
    takes laid over the entry's own."""
    taken = {k: v for k, v in parameters.items() if k in flow.parameters.properties}
    schedules = [
        _schedule_config_to_deployment_schedule(s.model_dump(exclude_none=True))
        for s in entry.schedules or []
    ]
    limit = entry.concurrency_limit
    if limit is not None and not isinstance(limit, int):
        limit = ConcurrencyLimitConfig(**limit.model_dump(exclude_none=True))
    return flow.to_deployment(
        name=entry.name,
        description=entry.description,
        parameters={**entry.parameters, **taken},
        schedules=schedules or None,
        concurrency_limit=limit,
        tags=entry.tags if isinstance(entry.tags, list) else None,
    )


def serve(
    names: list[str] | None = None,
    limit: int | None = None,
    parameters: dict[str, Any] | None = None,
) -> None:
    """Serve the deployments until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(names=names, parameters=parameters), limit=limit)
