"""The RESULT line of bench/daily_run.py: the figures the issue asks for, computed per round."""

from __future__ import annotations

import pytest

from bench.daily_run import result_fields


def _rows(walls: dict[tuple[str, str, int], float]) -> list[dict]:
    return [
        {"db": "sqlite", "symbols": 4, "runner": runner, "day": day, "round": round_,
         "wall": wall, "running": wall - 0.5}
        for (runner, day, round_), wall in walls.items()
    ]  # fmt: skip


def test_speedups_are_medians_of_each_rounds_own_ratio():
    walls = {
        ("sequential", "first", 1): 16.0, ("dask-cluster", "first", 1): 10.0,  # 1.6x
        ("sequential", "first", 2): 18.0, ("dask-cluster", "first", 2): 9.0,  # 2.0x
        ("sequential", "first", 3): 15.0, ("dask-cluster", "first", 3): 10.0,  # 1.5x
        ("sequential", "next", 1): 5.0, ("dask-cluster", "next", 1): 4.0,
        ("sequential", "next", 2): 6.0, ("dask-cluster", "next", 2): 3.0,
        ("sequential", "next", 3): 5.0, ("dask-cluster", "next", 3): 5.0,
    }  # fmt: skip
    fields = result_fields(_rows(walls), ["sqlite"], ["sequential", "dask-cluster"])
    assert fields["parallel_speedup_4sym"] == pytest.approx(1.6)
    assert fields["dask_cluster_first_speedup_4sym"] == pytest.approx(1.6)
    assert fields["parallel_speedup_4sym_next"] == pytest.approx(1.25)
    assert fields["next_day_4sym_s"] == 3.0  # the fastest next-day 4-symbol wall
    assert fields["first_4sym_sequential_s"] == 16.0
    assert fields["dask_cluster_first_speedup_4sym_running"] == pytest.approx(15.5 / 9.5)


def test_the_headline_is_the_recommended_layout_not_the_best_of_several():
    walls = {
        ("sequential", "first", 1): 16.0,
        ("processes", "first", 1): 8.0,  # faster, but not the layout README recommends
        ("dask-cluster", "first", 1): 10.0,
        ("sequential", "next", 1): 5.0,
        ("processes", "next", 1): 10.0,
        ("dask-cluster", "next", 1): 4.0,
    }
    runners = ["sequential", "processes", "dask-cluster"]
    fields = result_fields(_rows(walls), ["sqlite"], runners)
    assert fields["parallel_speedup_4sym"] == pytest.approx(1.6)
    assert fields["processes_first_speedup_4sym"] == pytest.approx(2.0)
