"""End to end with the real server: ``prefect server start``, ``candlecast serve``, a run of
``daily`` created through the API as the UI creates one, its forecasts read back with SQL.

On SQLite only: the flows themselves are tested on both databases (tests/test_flow_daily.py),
and another served run on PostgreSQL would add 40-60 s for no new orchestration path.
"""

from __future__ import annotations

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient

from candlecast.serve import PREFECT_YAML, deployments
from tests.e2e.harness import SMALL_RUN, Served, latest_forecasts, wait_for_final_state


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # why: the module docstring
def test_daily_run_created_through_the_api_completes_and_writes_forecasts(
    served: Served, prefect_client: SyncPrefectClient
) -> None:
    spec = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    deployment = prefect_client.read_deployment_by_name("daily-forecast/daily")
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
        (s["cron"], s["timezone"], s["active"]) for s in spec["daily"]["schedules"]
    ]
    assert deployment.global_concurrency_limit is not None
    assert deployment.global_concurrency_limit.limit == spec["daily"]["concurrency_limit"] == 1
    # the served defaults: prefect.yaml's, overridden where the flow takes the key
    assert deployment.parameters == {**spec["daily"]["parameters"], **SMALL_RUN}
    backfill = prefect_client.read_deployment_by_name("backfill/backfill")
    assert backfill.schedules == []
    assert backfill.parameters == {**spec["backfill"]["parameters"], "preset": "tiny", "horizon": 2}

    # a run's own parameters win over the served defaults (horizon 3, not 2)
    parameters = {**SMALL_RUN, "horizon": 3}
    created = prefect_client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
    flow_run = wait_for_final_state(prefect_client, created.id, served.process)

    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    rows = latest_forecasts(served.db_url, "WAVEUSDT")
    assert [(r["version"], r["horizon"]) for r in rows] == [(1, 1), (1, 2), (1, 3)]
    assert {r["flow_run_id"] for r in rows} == {str(created.id)}
    assert all(r["predicted_close"] > 0 for r in rows)


def test_serve_refuses_a_parameter_no_served_flow_takes() -> None:
    with pytest.raises(ValueError, match="no served flow takes the parameter.s. horizion$"):
        deployments(parameters={"preset": "tiny", "horizion": 2})
    with pytest.raises(ValueError, match="symbols"):  # backfill alone takes `symbol`
        deployments(names=["backfill"], parameters={"symbols": ["WAVEUSDT"]})
