"""bench/gate_walk.py scores one evaluation twin's test window static and walked, with the
gate's verdict on each, and names a shared-style file by the pair its own rows hold."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import bench.gate_walk as gate_walk

ADA = Path(__file__).parent / "data" / "Binance_ADAUSDT_d.csv"

pytestmark = pytest.mark.slow


def test_the_static_and_walked_scores_of_one_file(capsys: pytest.CaptureFixture[str]) -> None:
    gate_walk.main([str(ADA), "--preset", "tiny", "--every", "30"])
    out = capsys.readouterr().out
    result = dict(item.split("=") for item in out.split("RESULT ")[1].split())
    assert set(result) == {
        "ADAUSDT_static_cov80_h1", "ADAUSDT_walked_cov80_h1", "ADAUSDT_walk_over_train",
    }  # fmt: skip
    assert all(0 <= float(result[k]) <= 100 for k in result if "cov80" in k)
    row = re.search(r"^ADAUSDT +(\d+) .* (\d+) +[\d.]+ +[\d.]+$", out, re.MULTILINE)
    days, fine_tunes = int(row.group(1)), int(row.group(2))
    assert fine_tunes == math.ceil(days / 30) - 1  # one per block after the first
