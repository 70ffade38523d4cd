"""The RESULT line of bench/daily_run.py: the figures the issue asks for, computed per round;
and the symbols it times beyond the 4 real pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.daily_run import PAIRS, bench_symbols, renamed_pair, result_fields
from candlecast.core.errors import ParseError
from tasks.cdd import parse_cdd_csv

DATA = Path(__file__).parent / "data"


def _rows(walls: dict[tuple[str, str, int], float], cpu: float = 20.0) -> list[dict]:
    """Rows as bench/daily_run.py's summarize makes them; every run uses ``cpu`` CPU-s."""
    return [
        {"db": "sqlite", "symbols": 4, "runner": runner, "day": day, "round": round_,
         "wall": wall, "running": wall - 0.5, "cpu": cpu, "cores": cpu / wall}
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


def test_each_rounds_speedup_splits_into_cores_kept_busy_over_cpu_used(
    capsys: pytest.CaptureFixture[str],
):
    rows = _rows({("sequential", "next", 1): 6.0, ("sequential", "next", 2): 6.0}, cpu=6.0)
    rows += _rows({("dask-cluster", "next", 1): 4.0}, cpu=7.2)  # 1.8 cores, 1.2x the CPU
    rows += _rows({("dask-cluster", "next", 2): 3.0}, cpu=6.0)  # 2 cores, the same CPU
    rows += [r | {"day": "first", "cpu": 2 * r["cpu"], "cores": 2 * r["cores"]} for r in rows]
    fields = result_fields(rows, ["sqlite"], ["sequential", "dask-cluster"])
    assert fields["dask_cluster_next_cpu_ratio_4sym"] == pytest.approx(1.1)  # median of 1.2, 1.0
    assert fields["dask_cluster_first_cpu_ratio_4sym"] == pytest.approx(1.1)
    printed = capsys.readouterr().out.splitlines()
    split = "round 1 1.50x = 1.80x / 1.20x; round 2 2.00x = 2.00x / 1.00x"
    assert [line.split(" day,")[0] for line in printed if line.endswith(split)] == [
        "sqlite dask-cluster first",
        "sqlite dask-cluster next",
    ]


def test_the_symbols_beyond_the_real_pairs_are_their_files_under_new_names():
    assert bench_symbols(4) == PAIRS
    assert bench_symbols(9) == [*PAIRS, "BTC2USDT", "ETH2USDT", "ADA2USDT", "BNB2USDT", "BTC3USDT"]
    for pair, new in zip(PAIRS, bench_symbols(8)[4:], strict=True):
        text = (DATA / f"Binance_{pair}_d.csv").read_text()
        original = parse_cdd_csv(text.encode(), symbol=pair, timeframe="d").frame
        renamed = parse_cdd_csv(renamed_pair(text, pair, new).encode(), symbol=new, timeframe="d")
        pd.testing.assert_frame_equal(renamed.frame, original)  # the same candles, volumes too
        with pytest.raises(ParseError, match=pair):  # and no longer the old pair's file
            parse_cdd_csv(renamed_pair(text, pair, new).encode(), symbol=pair, timeframe="d")


def test_more_symbols_name_their_count_in_the_result_keys():
    walls = {("sequential", day, 1): 16.0 for day in ("first", "next")}
    walls |= {("dask-cluster", day, 1): 9.0 for day in ("first", "next")}
    rows = [r | {"symbols": 8} for r in _rows(walls)]
    fields = result_fields(rows, ["sqlite"], ["sequential", "dask-cluster"], count=8)
    assert fields["parallel_speedup_8sym"] == pytest.approx(16 / 9)
    assert fields["next_day_8sym_s"] == 9.0
    assert not [key for key in fields if "4sym" in key]
