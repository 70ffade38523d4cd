"""Marking candlecast's flow runs Crashed when their machine dies (``candlecast detect-crashes``).

A flow run whose machine loses power, or whose container is evicted, never reports a final
state: it stays Running in the UI forever, and a ``daily`` run with ``runner="deployments"``
waits ``tasks.deployments.DEPLOYMENT_WAIT_S`` (6 h) for such a symbol run before it gives up.
Every flow run sends a heartbeat event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds
(180 by default); the automation made here, the one Prefect's "detect zombie flows" guide
describes, marks a run of candlecast's flows Crashed once no heartbeat and no final state has
come for ``within`` seconds. Its parent then names the symbol at once, and the others keep
their results.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.settings import get_current_settings

from candlecast.core.errors import CandlecastError

AUTOMATION = "candlecast: crash flow runs that stopped sending heartbeats"
FLOWS = ("daily-forecast", "forecast-symbol", "backfill", "ingest")  # the flows in flows/
MISSED_HEARTBEATS = 3  # the default wait, in heartbeat intervals
FINAL_EVENTS = {
    f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")
}


class CrashDetectionError(CandlecastError, ValueError):
    """The automation cannot work as asked; the message says which setting to change."""


def heartbeat_seconds() -> int:
    """This environment's heartbeat interval (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``)."""
    seconds = get_current_settings().flows.heartbeat_frequency
    if seconds is None:
        raise CrashDetectionError(
            "flow run heartbeats are off (PREFECT_FLOWS_HEARTBEAT_FREQUENCY is unset), so a "
            "dead flow run cannot be told from a live one; set it (e.g. 180) here and on "
            "every worker"
        )
    return seconds


def crash_automation(within_s: float | None = None) -> Automation:
    """The automation (not yet stored): a run of one of ``FLOWS`` that has sent a heartbeat,
    then nothing for ``within_s`` seconds (default: ``MISSED_HEARTBEATS`` intervals), neither
    a heartbeat nor a final state, is set Crashed."""
    interval = heartbeat_seconds()
    within = float(within_s) if within_s is not None else MISSED_HEARTBEATS * interval
    if within <= interval:
        raise CrashDetectionError(
            f"within must be longer than the heartbeat interval ({interval} s, "
            f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY), got {within:g} s: every live run would crash"
        )
    return Automation(
        name=AUTOMATION,
        description=(
            f"Flow runs of {', '.join(FLOWS)} with no heartbeat or final state for "
            f"{within:g} s: their machine or process stopped (candlecast detect-crashes)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(FLOWS)},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within:g} s: its machine or process stopped",
            )
        ],
    )


def enable_crash_detection(within_s: float | None = None) -> tuple[Automation, bool]:
    """Store the automation on the Prefect server at ``PREFECT_API_URL``, replacing the one
    of the same name if there is one (so running it again applies a new ``within_s``).
    Returns the stored automation and whether it is new."""
    from prefect.client.orchestration import get_client

    if get_current_settings().api.url is None:  # else a temporary server would get it
        raise CrashDetectionError(
            "PREFECT_API_URL is unset: point it at the Prefect server the workers use"
        )
    wanted = crash_automation(within_s)
    with get_client(sync_client=True) as client:
        stored = client.read_automations_by_name(AUTOMATION)
    if not stored:
        return wanted.create(), True
    wanted.id = stored[0].id
    wanted.update()
    return wanted, False
