"""Split, scaler and windows: exact alignment on hand-built frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.presets import ModelConfig
from tasks.prepare import (
    feature_frame,
    latest_window,
    prepare,
    segment_ids,
    split_bounds,
    to_price,
)

LEVEL = ModelConfig(name="t", target="level", window=3, val_fraction=0.1, test_fraction=0.2)


def unscale(values, prepared, column="close"):
    return prepared.scaler.inverse_column(values, column)


def test_split_bounds_are_chronological_shares():
    assert split_bounds(10, 0.1, 0.2) == (7, 8)
    assert split_bounds(2981, 0.1, 0.2) == (2087, 2385)
    with pytest.raises(ValueError):
        split_bounds(3, 0.5, 0.5)


def test_level_windows_and_targets_line_up_exactly(candles):
    frame = candles([100.0 + i for i in range(10)])  # close of row i = 100 + i
    p = prepare(frame, LEVEL)
    # train targets are rows 3..6 (< a = 7), val row 7, test rows 8 and 9
    assert unscale(p.train.y, p).round(6).tolist() == [103, 104, 105, 106]
    assert unscale(p.train.x[0, :, 0], p).round(6).tolist() == [100, 101, 102]
    assert unscale(p.train.x[-1, :, 0], p).round(6).tolist() == [103, 104, 105]
    assert p.train.base_close.tolist() == [102, 103, 104, 105]
    assert p.val.actual_close.tolist() == [107]
    assert p.test.actual_close.tolist() == [108, 109]
    assert p.test.base_close.tolist() == [107, 108]
    assert list(p.test.target_time) == list(frame.index[8:10])


def test_log_return_target_is_next_close_over_last_close(candles):
    closes = [100, 110, 99, 120, 130, 125, 140, 150, 160, 170]
    frame = candles(closes)
    config = LEVEL.replace(target="log_return", window=2)
    p = prepare(frame, config)
    # first window ends at row 2 (rows 1, 2 hold returns); its target is row 3's return
    assert unscale(p.train.x[0, :, 0], p) == pytest.approx(np.log([110 / 100, 99 / 110]))
    assert unscale(p.train.y[0:1], p) == pytest.approx([np.log(120 / 99)])
    assert p.train.base_close[0] == 99
    price = to_price(p.train.y[0:1], p.train.base_close[0:1], p.scaler, config)
    assert price == pytest.approx([120.0])


def test_scaler_sees_training_rows_only(candles):
    closes = [100.0 + i for i in range(10)]
    p = prepare(candles(closes), LEVEL)
    assert p.scaler.mean == pytest.approx((np.mean(closes[:7]),))
    assert p.scaler.scale == pytest.approx((np.std(closes[:7]),))
    wild_test = closes[:8] + [1e6, 2e6]
    assert prepare(candles(wild_test), LEVEL).scaler == p.scaler


def test_no_window_spans_a_gap(candles):
    frame = candles([100.0 + i for i in range(12)], drop=[5])  # day 5 missing
    assert segment_ids(frame.index, "d").tolist() == [0] * 5 + [1] * 6
    config = LEVEL.replace(val_fraction=0.0, test_fraction=0.0)
    p = prepare(frame, config)
    # runs: days 0-4 and 6-11; window 3 + target fit in days 3, 4 and 9, 10, 11 only
    assert [t.day - 1 for t in p.train.target_time] == [3, 4, 9, 10, 11]
    for x in unscale(p.train.x[:, :, 0], p):
        assert np.diff(x).round(6).tolist() == [1.0, 1.0]  # consecutive days only


def test_log_returns_are_undefined_right_after_a_gap(candles):
    frame = candles([100.0, 101, 102, 103, 104], drop=[2])
    returns = feature_frame(frame, LEVEL.replace(target="log_return"), "d")["close"]
    assert returns.isna().tolist() == [True, False, True, False]


def test_latest_window_refuses_a_gap(candles):
    config = LEVEL.replace(val_fraction=0.0, test_fraction=0.0)
    frame = candles([100.0 + i for i in range(8)], drop=[6])
    p = prepare(frame, config)
    with pytest.raises(ValueError, match="not consecutive"):
        latest_window(frame, config, p.scaler)
    window = latest_window(frame.iloc[:-1], config, p.scaler)
    assert unscale(window[0, :, 0], p).round(6).tolist() == [103, 104, 105]


def test_scaler_round_trips_as_plain_numbers(candles):
    import json

    p = prepare(candles([100.0 + i for i in range(10)]), LEVEL)
    again = type(p.scaler).from_dict(json.loads(json.dumps(p.scaler.to_dict())))
    assert again == p.scaler
    assert isinstance(pd.Series(again.mean).iloc[0], float)
