"""The lecture's pictures, done honestly: PNG files of the training curves and the fits, and
for a model with a band network the fan chart of the next days and the bands' calibration.

Each figure gets fixed margins, wide enough for six-digit prices and rotated dates, instead
of ``tight_layout``, which lays the whole figure out once more to measure it: plotting is a
large share of a next day's per-symbol work (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from candlecast.core.identifiers import label as candle_label  # noqa: E402
from tasks.forecast import forecast  # noqa: E402
from tasks.prepare import Samples, prepare  # noqa: E402
from tasks.trained import TrainedModel, predict_prices  # noqa: E402

DPI = 110  # 11 inches wide: 1,210 pixels
FAN_HISTORY = 90  # closes the fan chart draws before the forecast
BAND_SHADES = {95: 0.2, 80: 0.4}  # nominal coverage: opacity (the wider band lighter)


def plot_history(trained: TrainedModel, path: Path) -> Path:
    """Loss (standardized target) and price-space MAPE per epoch, training and validation."""
    return _save(history_figure(trained), path)


def history_figure(trained: TrainedModel) -> plt.Figure:
    """The figure of :func:`plot_history`, open (the caller closes it)."""
    history = trained.history
    fig, (loss_ax, mape_ax) = plt.subplots(1, 2, figsize=(11, 4))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.84, wspace=0.18)
    for key, label in (("loss", "train"), ("val_loss", "validation")):
        if key in history:
            loss_ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    loss_ax.set(title=f"loss ({trained.config.loss}, standardized)", xlabel="epoch")
    for key, label in (("price_mape", "train"), ("val_price_mape", "validation")):
        if key in history:
            mape_ax.plot(range(1, len(history[key]) + 1), history[key], label=label)
    val = trained.metrics.get("val")
    if val is not None:
        mape_ax.axhline(val["persistence_mape"], color="grey", ls="--", label="persistence (val)")
    mape_ax.set(title="MAPE in price units (%)", xlabel="epoch")
    for ax in (loss_ax, mape_ax):
        ax.legend()
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.suptitle(f"{trained.config.name}: training curves")
    return fig


def plot_fit(trained: TrainedModel, samples: Samples, title: str, path: Path) -> Path:
    """Predicted against actual close, with persistence (yesterday's close) drawn too."""
    predicted = predict_prices(trained, samples)
    fig, (ax, moves) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, hspace=0.06)  # bottom: autofmt_xdate
    when = samples.target_time
    ax.plot(when, samples.actual_close, color="black", lw=1.2, label="actual close")
    ax.plot(when, samples.base_close, color="grey", lw=0.8, ls="--", label="persistence")
    ax.plot(when, predicted, color="tab:orange", lw=1.0, label=f"{trained.config.name} model")
    ax.set(title=title, ylabel="close (quote currency)")
    # on the price scale model and persistence overlap: the moves show what the model adds
    base = samples.base_close
    moves.plot(when, 100 * (samples.actual_close / base - 1), color="black", lw=0.6, label="actual")
    moves.plot(when, 100 * (predicted / base - 1), color="tab:orange", lw=1.0, label="predicted")
    moves.axhline(0, color="grey", ls="--", lw=0.8, label="persistence")
    moves.set(ylabel="move vs previous close (%)")
    for axis in (ax, moves):
        axis.legend(loc="upper left")
        axis.grid(alpha=0.3)
    fig.autofmt_xdate(bottom=0.12)
    return _save(fig, path)


def plot_fan_chart(
    trained: TrainedModel, frame: pd.DataFrame, predicted: pd.DataFrame, path: Path
) -> Path:
    """The newest closes, then the forecast median with its 80% and 95% bands."""
    return _save(fan_chart_figure(trained, frame, predicted), path)


def fan_chart_figure(
    trained: TrainedModel, frame: pd.DataFrame, predicted: pd.DataFrame
) -> plt.Figure:
    """The figure of :func:`plot_fan_chart`, open (the caller closes it).

    `predicted` is :func:`tasks.forecast.forecast`'s frame for the newest candle of `frame`.
    The median and the bands start at the newest close (a band of width 0: that close is
    known), so a band of one horizon still shows; a horizon whose band is NaN draws the
    median only.
    """
    recent = frame["close"].iloc[-FAN_HISTORY:]
    fig, ax = plt.subplots(figsize=(11, 5))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93)  # bottom: autofmt_xdate
    ax.plot(recent.index, recent, color="black", lw=1.2, label="close")
    when = recent.index[-1:].append(predicted.index)
    start = [recent.iloc[-1]]
    median = np.concatenate([start, predicted["close"].to_numpy(dtype=float)])
    ax.plot(when, median, color="tab:orange", lw=1.2, marker="o", ms=3, label="median forecast")
    for nominal, alpha in BAND_SHADES.items():
        low = np.concatenate([start, predicted[f"low{nominal}"].to_numpy(dtype=float)])
        high = np.concatenate([start, predicted[f"high{nominal}"].to_numpy(dtype=float)])
        banded = np.isfinite(low) & np.isfinite(high)
        if banded[1:].any():
            ax.fill_between(
                when[banded], low[banded], high[banded], color="tab:orange", alpha=alpha,
                lw=0, label=f"{nominal}% band",
            )  # fmt: skip
    newest = candle_label(recent.index[-1], trained.timeframe)
    ax.set(
        title=f"{trained.config.name}: the next {len(predicted)} closes after {newest}",
        ylabel="close (quote currency)",
    )
    ax.legend(loc="best")  # the history's swings leave no corner always free
    ax.grid(alpha=0.3)
    fig.autofmt_xdate(bottom=0.16)  # 0.8 inches: the rotated dates of a 5-inch figure
    return fig


def plot_calibration(trained: TrainedModel, path: Path) -> Path:
    """Nominal against realised coverage of the bands on the test part, per horizon."""
    return _save(calibration_figure(trained), path)


def calibration_figure(trained: TrainedModel) -> plt.Figure:
    """The figure of :func:`plot_calibration`, open (the caller closes it).

    One line per horizon h = 1..H from the test part's `band_scores` calibration, the
    diagonal (a band that covers as often as it says), and the naive band at h = 1 for
    comparison. Raises KeyError when the test part has no band scores.
    """
    scores = trained.metrics["test"]["bands"]
    model, naive = scores["model"], scores["naive"]
    nominal = model["calibration"]["nominal"]
    realised = model["calibration"]["realised"]
    fig, ax = plt.subplots(figsize=(8.5, 6))
    fig.subplots_adjust(left=0.09, right=0.67, bottom=0.1, top=0.92)  # square; legend right
    ax.plot([0, 100], [0, 100], color="black", lw=0.8, ls=":", label="perfect calibration")
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(realised)))
    for h, (row, colour) in enumerate(zip(realised, colours, strict=True), start=1):
        ax.plot(nominal, _floats(row), color=colour, marker="o", ms=4, clip_on=False,
                label=f"h = {h} (n = {model['n'][h - 1]})")  # fmt: skip
    ax.plot(nominal, _floats(naive["calibration"]["realised"][0]), color="grey", ls="--",
            marker=".", clip_on=False, label="naive band, h = 1")  # fmt: skip
    ax.set(
        xlim=(0, 100), ylim=(0, 100), xticks=range(0, 101, 10), yticks=range(0, 101, 10),
        xlabel="nominal coverage (%)", ylabel="realised coverage (%)",
        title=f"{trained.config.name}: band calibration, test part (n = {model['n'][0]} at h = 1)",
    )  # fmt: skip
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return fig


def _floats(values: list[float | None]) -> np.ndarray:
    """A JSON list of scores as floats, None (a horizon without rows) as NaN: not drawn."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_all(
    trained: TrainedModel,
    frame: pd.DataFrame,
    directory: Path,
    predicted: pd.DataFrame | None = None,
) -> list[Path]:
    """History, training-part fit and test-part fit as PNG files in `directory`, and for a
    model with a band network the fan chart and the calibration plot; their paths.

    `predicted`: the forecast the fan chart draws (:func:`tasks.forecast.forecast` on
    `frame`); None: computed here, by the served twin where there is one, over the band
    network's horizon. The other plots show `trained` itself: the twin the gate scored.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prepared = prepare(frame, trained.config, trained.timeframe, scaler=trained.scaler)
    paths = [plot_history(trained, directory / "history.png")]
    parts = (("train", prepared.train), ("test", prepared.test))
    for name, samples in parts:
        if len(samples):
            paths.append(_fit_plot(trained, name, samples, directory))
    if trained.bands is not None:
        paths.extend(_band_plots(trained, frame, directory, predicted, trained.bands.horizon))
    return paths


def _band_plots(
    trained: TrainedModel,
    frame: pd.DataFrame,
    directory: Path,
    predicted: pd.DataFrame | None,
    horizon: int,
) -> list[Path]:
    """The fan chart, when the newest candles can be forecast from (over `horizon` periods
    unless `predicted` is given), and the calibration plot, when the test part has band
    scores."""
    paths = []
    if predicted is None:
        try:
            predicted = forecast(trained.serving, frame, horizon)
        except ValueError:  # IncompleteWindowError is one: too many newest candles missing
            predicted = None
    if predicted is not None:
        paths.append(plot_fan_chart(trained, frame, predicted, directory / "fan_chart.png"))
    test = trained.metrics.get("test") or {}
    if any(test.get("bands", {}).get("model", {}).get("n", [])):
        paths.append(plot_calibration(trained, directory / "calibration.png"))
    return paths


def _fit_plot(trained: TrainedModel, name: str, samples: Samples, directory: Path) -> Path:
    metrics = trained.metrics.get(name) or {}
    score = ""
    if "mape" in metrics:
        score = f" - MAPE {metrics['mape']:.2f}% vs persistence {metrics['persistence_mape']:.2f}%"
    title = f"{trained.config.name}: predicted vs actual close, {name} part{score}"
    return plot_fit(trained, samples, title, directory / f"fit_{name}.png")


def _save(fig: plt.Figure, path: Path) -> Path:
    """Draw ``fig`` at ``DPI`` and write it as a PNG of at most 256 colours, then close it.

    Line plots on a white ground need few colours: against matplotlib's own RGBA PNG the
    plots take about a third of the bytes, which every day's plots artifact carries to the
    Prefect server and its database, in the same time. The colour the background maps to is
    set back to the background's exact colour (the octree averages it with the antialiased
    edges next to it).
    """
    path = Path(path)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    size = fig.canvas.get_width_height(physical=True)
    rgba = Image.frombuffer("RGBA", size, fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    rgb = rgba.convert("RGB")  # a copy: the canvas may go
    plt.close(fig)
    image = rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette = image.getpalette() or []
    ground = image.getpixel((0, 0))  # a corner: the figure's margin, never drawn on
    palette[3 * ground : 3 * ground + 3] = rgb.getpixel((0, 0))
    image.putpalette(palette)
    image.save(path, format="PNG")
    return path
