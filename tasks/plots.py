"""The lecture's pictures, done honestly: PNG files of the training curves and the fits.

Each figure gets fixed margins, wide enough for six-digit prices and rotated dates, instead
of ``tight_layout``, which lays the whole figure out once more to measure it: plotting is a
large share of a next day's per-symbol work (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

from tasks.prepare import Samples, prepare  # noqa: E402
from tasks.trained import TrainedModel, predict_prices  # noqa: E402

DPI = 110  # 11 inches wide: 1,210 pixels


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


def plot_all(trained: TrainedModel, frame: pd.DataFrame, directory: Path) -> list[Path]:
    """History, training-part fit and test-part fit as PNG files in `directory`; their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prepared = prepare(frame, trained.config, trained.timeframe, scaler=trained.scaler)
    paths = [plot_history(trained, directory / "history.png")]
    parts = (("train", prepared.train), ("test", prepared.test))
    for name, samples in parts:
        if len(samples):
            paths.append(_fit_plot(trained, name, samples, directory))
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
