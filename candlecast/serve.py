"""Serve the deployments declared in ``prefect.yaml`` from this process (``candlecast serve``).

``prefect.yaml`` stays the one description of the deployments: this module reads it and
turns each entry into a served deployment, so the Prefect UI lists them and its Run button
starts them here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import RunnerDeployment
from prefect.flows import Flow
from prefect.schedules import Cron

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
    spec = yaml.safe_load(path.read_text())
    served = []
    taken: set[str] = set()
    for entry in spec["deployments"]:
        if names and entry["name"] not in names:
            continue
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=s.get("active", True))
            for s in entry.get("schedules") or []
        ]
        flow = load_flow(entry["entrypoint"])
        taken |= set(flow.parameters.properties)
        overrides = {
            key: value
            for key, value in (parameters or {}).items()
            if key in flow.parameters.properties
        }
        served.append(
            flow.to_deployment(
                name=entry["name"],
                description=entry.get("description"),
                parameters={**(entry.get("parameters") or {}), **overrides},
                schedules=schedules or None,
                concurrency_limit=entry.get("concurrency_limit"),
                tags=entry.get("tags"),
            )
        )
    unknown = sorted(set(parameters or {}) - taken)
    if unknown:
        raise ValueError(f"no served flow takes the parameter(s) {', '.join(unknown)}")
    return served


def serve(
    names: list[str] | None = None,
    limit: int | None = None,
    parameters: dict[str, Any] | None = None,
) -> None:
    """Serve the deployments until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(names=names, parameters=parameters), limit=limit)
