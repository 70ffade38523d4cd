"""The band plots: the fan chart of the next days and the bands' calibration, and which files
`plot_all` writes with and without a band network."""

from __future__ import annotations

import copy
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.dates import date2num

from models.presets import preset
from tasks.forecast import forecast
from tasks.plots import calibration_figure, fan_chart_figure, plot_all
from tasks.train import train_model
from tests.modelling.conftest import make_candles, wavy_closes

TINY = preset("tiny")
PNG = b"\x89PNG\r\n\x1a\n"
OLD_PLOTS = ["history.png", "fit_train.png", "fit_test.png"]


@pytest.fixture(scope="module")
def frame():
    return make_candles(wavy_closes(300))


@pytest.fixture(scope="module")
def banded(frame):
    trained = train_model(frame, TINY, track_price_mape=False)
    assert trained.bands is not None and trained.bands.horizon == TINY.band_horizon == 3
    return trained


def test_a_banded_model_adds_the_fan_chart_and_the_calibration_plot(banded, frame, tmp_path):
    paths = plot_all(banded, frame, tmp_path)
    assert [p.name for p in paths] == [*OLD_PLOTS, "fan_chart.png", "calibration.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        assert path.read_bytes()[:8] == PNG, path.name


def test_a_point_only_model_keeps_its_three_plots(frame, tmp_path):
    trained = train_model(frame, TINY.replace(band_horizon=0), track_price_mape=False)
    assert trained.bands is None
    paths = plot_all(trained, frame, tmp_path)
    assert [p.name for p in paths] == OLD_PLOTS
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OLD_PLOTS)
    for path in paths:
        assert path.read_bytes()[:8] == PNG, path.name


def test_the_fan_chart_shades_both_bands_over_the_banded_days(banded, frame):
    predicted = forecast(banded, frame, horizon=5)  # days 4 and 5: past the bands, NaN
    assert predicted["low95"].isna().tolist() == [False, False, False, True, True]
    figure = fan_chart_figure(banded, frame, predicted)
    (ax,) = figure.axes
    shaded = {c.get_label(): c for c in ax.collections if isinstance(c, PolyCollection)}
    assert sorted(shaded) == ["80% band", "95% band"]
    assert shaded["95% band"].get_alpha() < shaded["80% band"].get_alpha()  # 95% lighter
    newest, banded_days = frame.index[-1], predicted.iloc[:3]
    last_close = frame["close"].iloc[-1]
    for nominal, band in shaded.items():
        low = banded_days[f"low{nominal[:2]}"]
        high = banded_days[f"high{nominal[:2]}"]
        vertices = np.concatenate([p.vertices for p in band.get_paths()])
        # from the newest candle (width 0: its close is known) to the last banded day only
        assert vertices[:, 0].min() == pytest.approx(date2num(newest))
        assert vertices[:, 0].max() == pytest.approx(date2num(banded_days.index[-1]))
        assert vertices[:, 1].min() == pytest.approx(min(low.min(), last_close))
        assert vertices[:, 1].max() == pytest.approx(max(high.max(), last_close))
        for when, lo, hi in zip(banded_days.index, low, high, strict=True):
            at_day = vertices[np.isclose(vertices[:, 0], date2num(when)), 1]
            assert at_day.min() == pytest.approx(lo) and at_day.max() == pytest.approx(hi)
    history, median = ax.get_lines()
    np.testing.assert_allclose(history.get_ydata(), frame["close"].iloc[-90:])
    # the median joined to the newest close, over all five days, bands or not
    np.testing.assert_allclose(median.get_ydata(), [last_close, *predicted["close"]])
    assert "tiny" in ax.get_title() and newest.strftime("%Y-%m-%d") in ax.get_title()
    assert ax.get_ylabel() == "close (quote currency)"
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "close", "median forecast", "80% band", "95% band",
    }  # fmt: skip
    plt.close(figure)


def test_a_forecast_without_bands_draws_the_median_only(banded, frame):
    predicted = forecast(banded, frame, horizon=3)
    predicted[["low95", "low80", "high80", "high95"]] = np.nan  # as without a band window
    figure = fan_chart_figure(banded, frame, predicted)
    (ax,) = figure.axes
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(ax.get_lines()[1].get_ydata()) == 4
    plt.close(figure)


def test_the_calibration_plot_has_a_line_per_horizon_and_the_diagonal(banded):
    model = banded.metrics["test"]["bands"]["model"]
    naive = banded.metrics["test"]["bands"]["naive"]
    figure = calibration_figure(banded)
    (ax,) = figure.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    horizons = [f"h = {h} (n = {model['n'][h - 1]})" for h in (1, 2, 3)]
    assert list(lines) == ["perfect calibration", *horizons, "naive band, h = 1"]
    np.testing.assert_array_equal(lines["perfect calibration"].get_xydata(), [[0, 0], [100, 100]])
    nominal = model["calibration"]["nominal"]
    for label, realised in zip(horizons, model["calibration"]["realised"], strict=True):
        np.testing.assert_allclose(lines[label].get_xdata(), nominal)
        np.testing.assert_allclose(lines[label].get_ydata(), realised)
        assert lines[label].get_marker() not in (None, "None", "")
    reference = lines["naive band, h = 1"]
    np.testing.assert_allclose(reference.get_ydata(), naive["calibration"]["realised"][0])
    assert reference.get_linestyle() == "--" and reference.get_color() == "grey"
    assert ax.get_xlim() == ax.get_ylim() == (0.0, 100.0)
    assert f"n = {model['n'][0]} at h = 1" in ax.get_title()
    plt.close(figure)


def test_a_horizon_without_rows_is_a_line_without_points(banded):
    metrics = copy.deepcopy(banded.metrics)
    calibration = metrics["test"]["bands"]["model"]["calibration"]
    calibration["realised"][2] = [None] * len(calibration["nominal"])
    figure = calibration_figure(dataclasses.replace(banded, metrics=metrics))
    h3 = figure.axes[0].get_lines()[3]
    assert h3.get_label().startswith("h = 3") and np.isnan(h3.get_ydata()).all()
    plt.close(figure)


def test_the_given_forecast_is_drawn_and_none_computed(banded, frame, tmp_path, monkeypatch):
    predicted = forecast(banded, frame, horizon=5)

    def no_forecast(*args, **kwargs):
        raise AssertionError("plot_all forecast although it was given one")

    monkeypatch.setattr("tasks.plots.forecast", no_forecast)
    paths = plot_all(banded, frame, tmp_path, predicted=predicted)
    assert [p.name for p in paths][3:] == ["fan_chart.png", "calibration.png"]


def test_no_fan_chart_when_the_newest_window_cannot_be_bridged(banded, frame, tmp_path):
    gappy = frame.drop(frame.index[-4:-1])  # three of the newest five candles: over the limit
    paths = plot_all(banded, gappy, tmp_path)
    assert [p.name for p in paths][3:] == ["calibration.png"]


def test_no_calibration_plot_without_test_band_scores(banded, frame, tmp_path):
    metrics = copy.deepcopy(banded.metrics)
    del metrics["test"]["bands"]
    paths = plot_all(dataclasses.replace(banded, metrics=metrics), frame, tmp_path)
    assert [p.name for p in paths][3:] == ["fan_chart.png"]
