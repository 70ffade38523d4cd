"""`candlecast serve` reads prefect.yaml as `prefect deploy` does: every schedule kind, both
forms of a concurrency limit."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule, RRuleSchedule

from candlecast.serve import PREFECT_YAML, deployments

YAML = """
deployments:
  - name: every-six-hours
    entrypoint: flows/daily.py:daily_forecast
    parameters: {symbols: [ETHUSDT]}
    schedules:
      - interval: 21600
        timezone: UTC
      - rrule: "FREQ=WEEKLY;BYDAY=MO"
        active: false
    concurrency_limit: {limit: 2, collision_strategy: CANCEL_NEW}
"""


def test_interval_and_rrule_schedules_and_a_limit_with_a_strategy(tmp_path: Path) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(YAML)
    (served,) = deployments(path, parameters={"horizon": 3})
    interval, rrule = (s.schedule for s in served.schedules)
    assert isinstance(interval, IntervalSchedule) and interval.interval == timedelta(hours=6)
    assert isinstance(rrule, RRuleSchedule) and not served.schedules[1].active
    assert served.concurrency_limit == 2
    assert served.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert served.parameters == {"symbols": ["ETHUSDT"], "horizon": 3}


def test_the_shipped_file_serves_its_three_deployments() -> None:
    served = {d.name: d for d in deployments(PREFECT_YAML)}
    assert set(served) == {"daily", "symbol", "backfill"}
    (daily,) = served["daily"].schedules
    assert isinstance(daily.schedule, CronSchedule) and daily.schedule.cron == "15 2 * * *"
    assert served["daily"].concurrency_limit == 1 and served["symbol"].concurrency_limit is None
