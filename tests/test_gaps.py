"""A gap in the newest candles: a short one bridged and said so, a long one a single line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from candlecast.core.errors import IncompleteWindowError
from candlecast.core.settings import Settings
from db.schema import Forecast
from db.session import session_factory
from flows.daily import daily_forecast
from tasks.forecast import MAX_BRIDGED, input_window
from tests.conftest import wavy_cdd_csv
from tests.modelling.conftest import make_candles


def test_a_complete_window_is_the_newest_rows_as_they_are() -> None:
    frame = make_candles([10.0, 11.0, 12.0, 13.0, 14.0])
    window, bridged = input_window(frame, 3, "d")
    assert bridged == 0
    assert window["close"].tolist() == [12.0, 13.0, 14.0]


def test_a_missing_day_is_bridged_on_the_line_in_log_price() -> None:
    frame = make_candles([10.0, 11.0, 12.0, 99.0, 27.0, 30.0], drop=[3])
    window, bridged = input_window(frame, 4, "d")
    assert bridged == 1
    assert list(window.index.day) == [3, 4, 5, 6]  # consecutive again
    gap = window.iloc[1]
    assert gap["close"] == pytest.approx(np.sqrt(12.0 * 27.0))  # halfway in log price
    assert gap[["open", "high", "low"]].tolist() == pytest.approx([gap["close"]] * 3)
    assert window["close"].iloc[[0, 2, 3]].tolist() == [12.0, 27.0, 30.0]  # real rows as they are


def test_a_gap_at_the_start_of_the_window_is_bridged_from_the_candle_before() -> None:
    frame = make_candles([10.0, 20.0, 99.0, 40.0, 41.0], drop=[2])
    window, bridged = input_window(frame, 3, "d")
    assert bridged == 1
    assert window["close"].tolist() == pytest.approx([np.sqrt(20.0 * 40.0), 40.0, 41.0])


def test_a_gap_that_begins_before_the_window_counts_whole() -> None:
    """One day missing in the window, but the last candle before it is three days earlier."""
    frame = make_candles([10.0, 99.0, 99.0, 99.0, 40.0, 41.0], start="2025-04-22", drop=[1, 2, 3])
    with pytest.raises(IncompleteWindowError, match="2025-04-23..2025-04-25 missing"):
        input_window(frame, 3, "d")


def test_more_missing_candles_than_may_be_bridged_name_the_gap() -> None:
    missing = list(range(3, 3 + MAX_BRIDGED + 1))
    frame = make_candles(np.linspace(10, 20, 10), start="2025-04-22", drop=missing)
    with pytest.raises(IncompleteWindowError) as raised:
        input_window(frame, 8, "d")
    assert str(raised.value) == "no forecast: 2025-04-25..2025-04-27 missing in the newest window"


def _gapped_file(mirror: Path, symbol: str, missing: list[str]) -> None:
    """The learnable WAVE file under another symbol, without the candles of ``missing``."""
    lines = wavy_cdd_csv(symbol).decode().splitlines()
    kept = [line for line in lines if not any(f",{day}," in line for day in missing)]
    (mirror / f"Binance_{symbol}_d.csv").write_text("\n".join(kept) + "\n")


@pytest.mark.slow
def test_a_short_gap_is_forecast_across_and_the_rows_say_so(
    prefect_env: Settings, mirror_dir: Path
) -> None:
    _gapped_file(mirror_dir, "GAPSUSDT", ["2025-10-12"])
    (outcome,) = daily_forecast(symbols=["GAPSUSDT"], preset="tiny", horizon=2)
    assert outcome.error is None and len(outcome.forecasts) == 2
    with session_factory(prefect_env.sqlalchemy_url())() as session:
        rows = session.execute(select(Forecast.horizon, Forecast.imputed_inputs)).all()
    assert sorted(rows) == [(1, 1), (2, 1)]


@pytest.mark.slow
def test_a_long_gap_is_one_line_the_version_kept_and_the_others_forecast(
    prefect_env: Settings, mirror_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exchange outage: 4 of the newest 5 days missing; `tiny` reads the newest 4."""
    days = ["2025-10-10", "2025-10-11", "2025-10-12", "2025-10-13"]
    _gapped_file(mirror_dir, "GAPLUSDT", days)
    with caplog.at_level(logging.WARNING):
        state = daily_forecast(
            symbols=["GAPLUSDT", "WAVEUSDT"], preset="tiny", horizon=2, return_state=True
        )
    line = "GAPLUSDT: no forecast: 2025-10-10..2025-10-13 missing in the newest window"
    assert state.is_failed() and state.message == line
    gap, wave = state.result(raise_on_failure=False)
    assert gap.version == 1 and gap.forecasts == [] and gap.error == line
    assert wave.error is None and len(wave.forecasts) == 2
    logged = [r for r in caplog.records if "missing in the newest window" in r.getMessage()]
    assert logged and all(r.exc_info is None for r in logged)  # no traceback
