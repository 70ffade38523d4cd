"""Training, fine-tuning, the update policy and the forecast, on tiny networks."""

from __future__ import annotations

import json
import random
import threading

import numpy as np
import pytest

from models import lstm, training
from models.presets import preset
from tasks.forecast import forecast
from tasks.prepare import latest_window, prepare, to_price
from tasks.train import decide, fine_tune, train_model, update_model
from tasks.trained import TrainedModel
from tests.modelling.conftest import make_candles, wavy_closes

TINY = preset("tiny")


def test_train_model_returns_a_serializable_evaluated_model(wavy_frame):
    trained = train_model(wavy_frame, TINY)
    assert trained.kind == "retrain"
    assert set(trained.history) >= {"loss", "val_loss", "price_mape", "val_price_mape"}
    assert len(trained.history["loss"]) == TINY.epochs
    test = trained.metrics["test"]
    assert test["n"] == len(prepare(wavy_frame, TINY).test)
    expected = {"mape", "persistence_mape", "relative_mae", "skill", "mape_standardized_lecture"}
    assert expected <= set(test)
    meta = json.loads(trained.metadata_json())
    again = TrainedModel.from_parts(trained.model_bytes, meta, trained.band_bytes)
    assert again.metadata() == trained.metadata()
    with pytest.raises(ValueError, match="band network whose bytes are missing"):
        TrainedModel.from_parts(trained.model_bytes, meta)
    x = prepare(wavy_frame, TINY).test.x
    np.testing.assert_array_equal(
        lstm.predict(again.keras_model, x), lstm.predict(trained.keras_model, x)
    )


def _first_epoch_loss(model, samples, config, lr):
    lstm.compile_model(model, config, lr)
    history = training.fit(
        model, (samples.x, samples.y), None, epochs=1, batch_size=config.batch_size
    )
    return history["loss"][0]


@pytest.mark.slow
def test_fine_tuning_starts_from_the_stored_weights(wavy_frame):
    config = TINY.replace(units=(8,), epochs=40, learning_rate=1e-2, fine_tune_learning_rate=1e-4)
    trained = train_model(wavy_frame, config, track_price_mape=False)
    train = prepare(wavy_frame, config, scaler=trained.scaler).train
    stored = lstm.compile_model(trained.keras_model, config).evaluate(
        train.x, train.y.reshape(-1, 1), verbose=0
    )
    tuned = fine_tune(trained, wavy_frame, epochs=1, track_price_mape=False)
    fresh = _first_epoch_loss(lstm.build(config, 1), train, config, config.fine_tune_learning_rate)
    tuned_loss = tuned.history["loss"][0]
    assert stored < 0.5 * fresh  # the stored model has learnt something
    assert abs(tuned_loss - stored) < 0.2 * abs(fresh - stored)
    assert tuned.kind == "fine_tune" and tuned.fine_tunes_since_retrain == 1
    assert tuned.scaler == trained.scaler


@pytest.mark.parametrize(
    ("policy", "has_model", "count", "ratio", "retrain_ratio", "expected"),
    [
        ("auto", False, 0, None, None, "retrain"),
        ("auto", True, 3, 0.99, 0.98, "fine_tune"),
        ("auto", True, 30, 0.99, 0.98, "retrain"),  # every 30 fine-tunes
        ("auto", True, 3, 1.10, 0.98, "retrain"),  # degraded by > 10 %
        ("auto", True, 3, 1.07, 0.98, "fine_tune"),  # within the 10 % tolerance
        ("fine_tune", True, 99, 5.0, 0.98, "fine_tune"),
        ("fine_tune", False, 0, None, None, "retrain"),
        ("retrain", True, 0, 0.9, 0.98, "retrain"),
    ],
)
def test_decide(policy, has_model, count, ratio, retrain_ratio, expected):
    assert decide(policy, has_model, count, ratio, retrain_ratio, 30, 0.1) == expected


@pytest.mark.parametrize(("policy", "expected"), [("auto", "retrain"), ("fine_tune", "fine_tune")])
def test_bands_served_too_narrow_retrain_under_auto_only(policy, expected):
    assert decide(policy, True, 3, 0.99, 0.98, 30, 0.1, narrow=True) == expected


def test_update_model_follows_the_policy(wavy_frame):
    first = update_model(None, wavy_frame, TINY)
    assert first.kind == "retrain"
    second = update_model(first, wavy_frame, TINY, policy="fine_tune")
    assert second.kind == "fine_tune"


def test_forecast_is_recursive_in_price_units_with_dates(wavy_frame):
    trained = train_model(wavy_frame, TINY, track_price_mape=False)
    out = forecast(trained, wavy_frame, horizon=7)
    last = wavy_frame.index[-1]
    assert list(out.index) == [last + np.timedelta64(k, "D") for k in range(1, 8)]
    assert out["step"].tolist() == list(range(1, 8))
    assert (out["close"] > 0).all()
    one = forecast(trained, wavy_frame, horizon=1)["close"].iloc[0]
    assert out["close"].iloc[0] == pytest.approx(one)
    x = latest_window(wavy_frame, TINY, trained.scaler)  # step 1 by hand
    by_hand = to_price(
        lstm.predict(trained.keras_model, x), wavy_frame["close"].iloc[-1:], trained.scaler, TINY
    )
    assert one == pytest.approx(float(by_hand[0]))
    with pytest.raises(ValueError):
        forecast(trained, wavy_frame, horizon=0)


def test_an_old_gap_trains_and_forecasts_as_usual_only_the_newest_window_is_bridged():
    outage = list(range(100, 105))  # long ago: windows around it are left out, nothing bridged
    closes = wavy_closes(300)
    old_gap = make_candles(closes, drop=outage)
    trained = train_model(old_gap, TINY, track_price_mape=False)
    out = forecast(trained, old_gap, horizon=2)
    assert out["imputed_inputs"].tolist() == [0, 0]
    recent = make_candles(closes, drop=[*outage, 297])  # one day inside the newest window too
    bridged = forecast(trained, recent, horizon=2)
    assert bridged["imputed_inputs"].tolist() == [1, 1]
    assert list(bridged.index) == list(out.index)  # counted from the same newest real candle


def test_plots_are_png_files(wavy_frame, tmp_path):
    from tasks.plots import plot_all

    trained = train_model(wavy_frame, TINY)
    paths = plot_all(trained, wavy_frame, tmp_path / "plots")
    expected = ["history", "fit_train", "fit_test", "fan_chart", "calibration"]
    assert [p.name for p in paths] == [f"{name}.png" for name in expected]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_are_palette_pngs_of_the_same_picture(wavy_frame, tmp_path):
    """Against matplotlib's own RGBA PNG of the same figure: fewer bytes, every pixel within
    a few levels, and the ground exactly the figure's white."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from tasks.plots import DPI, _save, history_figure

    trained = train_model(wavy_frame, TINY)
    ours = _save(history_figure(trained), tmp_path / "ours.png")
    reference = tmp_path / "matplotlib.png"
    figure = history_figure(trained)
    figure.savefig(reference, dpi=DPI)
    plt.close(figure)
    with Image.open(ours) as image:
        assert image.mode == "P"
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    with Image.open(reference) as image:
        expected = np.asarray(image.convert("RGB"), dtype=int)
    assert pixels.shape == expected.shape
    difference = np.abs(pixels - expected)
    assert difference.max() <= 32 and difference.mean() < 2, (difference.max(), difference.mean())
    assert tuple(pixels[0, 0]) == tuple(expected[0, 0]) == (255, 255, 255)
    assert ours.stat().st_size < 0.6 * reference.stat().st_size


def test_history_plot_marks_whole_epochs_only(wavy_frame):
    import matplotlib.pyplot as plt

    from tasks.plots import history_figure

    trained = train_model(wavy_frame, TINY)
    assert len(trained.history["loss"]) < 5  # few epochs: where fractional ticks would appear
    figure = history_figure(trained)
    for ax in figure.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    plt.close(figure)


def test_plots_keep_six_digit_prices_and_dates_inside_the_picture(tmp_path):
    """The figures have fixed margins (no tight_layout): a label cut at an edge would leave
    ink on the picture's outermost pixels."""
    from matplotlib.image import imread

    from tasks.plots import plot_all

    frame = make_candles(wavy_closes(400) * 1000.0)  # closes around 100,000
    assert frame["close"].max() > 100_000
    paths = plot_all(train_model(frame, TINY), frame, tmp_path / "plots")
    for path in paths:
        pixels = imread(path)[..., :3]
        frame_pixels = np.concatenate(
            [pixels[:3].reshape(-1, 3), pixels[-3:].reshape(-1, 3)]
            + [pixels[:, :3].reshape(-1, 3), pixels[:, -3:].reshape(-1, 3)]
        )
        assert frame_pixels.min() > 0.99, f"{path.name}: something drawn at the edge"


def test_warm_up_trains_on_every_feature_a_preset_may_use():
    from models.presets import PRICE_COLUMNS, VOLUME_COLUMNS
    from tasks.train import warm_up

    every_feature = TINY.replace(features=(*PRICE_COLUMNS, *VOLUME_COLUMNS))
    assert warm_up(every_feature) > 0  # would raise on a column the synthetic series lacks
    assert warm_up(TINY, days=TINY.window + 40) > 0
    with pytest.raises(ValueError, match="no training windows"):
        warm_up(TINY, days=TINY.window)


def test_training_is_deterministic_while_other_threads_draw_random_numbers(wavy_frame):
    """Prefect's threads (logs, events, retry jitter) draw from Python's global `random`,
    which Keras draws unseeded initializer and dropout seeds from: a thread doing so
    throughout must not change the weights of a fit or a fine-tune."""
    config = TINY.replace(dropout=0.1)
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(0.001):
            random.random()

    drawer = threading.Thread(target=draw, daemon=True)
    drawer.start()
    try:
        runs = [train_model(wavy_frame, config, track_price_mape=False) for _ in range(2)]
        tuned = [fine_tune(run, wavy_frame, track_price_mape=False) for run in runs]
    finally:
        stop.set()
        drawer.join()
    for first, second in (runs, tuned):
        for a, b in zip(
            first.keras_model.get_weights(), second.keras_model.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)
