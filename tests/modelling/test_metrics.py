"""Metrics in price space: hand-computed values and the behaviour at zero."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.presets import preset
from tasks.cdd import parse_cdd_csv
from tasks.evaluate import (
    evaluate,
    mae,
    mape,
    relative_mae,
    rmse,
    skill,
    skill_significance,
    standardized_mape_lecture,
)
from tasks.prepare import prepare


def test_mape_matches_a_hand_computed_value():
    # |100-110|/100 = 10 %, |200-190|/200 = 5 %  ->  7.5 %
    assert mape([100.0, 200.0], [110.0, 190.0]) == pytest.approx(7.5)


def test_mae_rmse_relative_mae_skill_by_hand():
    actual, model, naive = [100.0, 200.0], [110.0, 190.0], [90.0, 170.0]
    assert mae(actual, model) == pytest.approx(10.0)
    assert rmse(actual, [100.0, 204.0]) == pytest.approx(math.sqrt(8.0))
    assert relative_mae(actual, model, naive) == pytest.approx(10.0 / 20.0)
    assert skill(1.5, 2.0) == pytest.approx(0.25)


def test_undefined_cases_raise():
    with pytest.raises(ValueError, match="actual value is 0"):
        mape([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        mape([], [])
    with pytest.raises(ValueError):
        mape([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="persistence has zero error"):
        relative_mae([1.0, 2.0], [1.0, 1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        skill(1.0, 0.0)


def test_evaluate_reports_model_next_to_persistence():
    metrics = evaluate([100.0, 200.0], [110.0, 190.0], [90.0, 210.0], [0.5, -1.0], [1.0, -1.0])
    assert metrics["mape"] == pytest.approx(7.5)
    assert metrics["persistence_mape"] == pytest.approx(7.5)
    assert metrics["skill"] == pytest.approx(0.0)
    assert metrics["mape_standardized_lecture"] == pytest.approx(50.0)
    assert metrics["n"] == 2
    assert (metrics["skill_p_value"], metrics["dm_statistic"]) == (1.0, 0.0)  # the same errors
    assert standardized_mape_lecture([0.5], [1.0]) == pytest.approx(100.0)


def test_a_skill_comes_with_how_far_it_is_from_chance():
    rng = np.random.default_rng(3)
    actual = 100.0 + rng.normal(0, 1, 200)
    noise = rng.normal(0, 1, 200)
    better = skill_significance(actual, actual + 0.1 * noise, actual + noise)
    assert better["skill_p_value"] < 1e-6 and better["dm_statistic"] < 0
    alike = skill_significance(actual, actual + noise, actual - noise[::-1])
    assert alike["skill_p_value"] > 0.05
    assert skill_significance([100.0], [101.0], [99.0]) == {
        "skill_p_value": None,
        "dm_statistic": None,
    }
    constant = skill_significance([100.0, 200.0], [101.0, 202.0], [100.0, 200.0])
    assert constant == {"skill_p_value": 0.0, "dm_statistic": None}  # errors 1% apart, always


def test_persistence_on_btcusdt_last_fifth_is_1_81_percent(cdd_dir):
    content = (cdd_dir / "Binance_BTCUSDT_d.csv").read_bytes()
    frame = parse_cdd_csv(content, symbol="BTCUSDT", timeframe="d").frame
    test = prepare(frame, preset("default")).test
    assert len(test) == round(0.2 * len(frame)) == 596
    assert mape(test.actual_close, test.base_close) == pytest.approx(1.8085, abs=1e-4)
