"""The report's figures, drawn from a QualityReport alone: PNG files the dataset card embeds.

matplotlib's object API with the Agg canvas: no pyplot, so no global figure state and no
display is touched. The default style and a PNG without the "Software" tag make the bytes a
function of the report (and of the matplotlib version), as the rest of the dataset folder is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emopillars.dataset.quality import ConfigQuality, QualityReport, StageYield
from emopillars.stages.taxonomy import LABELS

if TYPE_CHECKING:  # matplotlib is imported when figures are drawn, not with the card
    from matplotlib.figure import Figure

FIGURES_DIR = "figures"
DPI = 100
COLOURS = {"context_less": "#4c72b0", "context_aware": "#dd8452", "intended": "#9a9a9a"}
KEPT = "#55a868"
# Reject reasons, one colour each (matplotlib's tab10 without its green, the kept one's).
REASON_COLOURS = ("#1f77b4", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
         "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#ff9896", "#c5b0d5", "#c49c94")  # fmt: skip


def _new_figure(width: float, height: float, margins: tuple[float, float, float, float]) -> Figure:
    """A figure of `width` x `height` inches; margins (left, right, bottom, top) as fractions.
    Fixed margins, not a layout engine: drawing stays fast enough for every assembly."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    left, right, bottom, top = margins
    figure.subplots_adjust(left=left, right=right, bottom=bottom, top=top)
    return figure


def _label_distribution(report: QualityReport) -> Figure:
    figure = _new_figure(8, 9, (0.17, 0.97, 0.07, 0.9))
    axes = figure.add_subplot()
    positions = np.arange(len(LABELS))
    bars = [
        (f"{name}: labelled", COLOURS[name], c.label_distribution) for name, c in _configs(report)
    ]
    if report.configs.context_less is not None:
        intended = report.configs.context_less.intended_distribution
        bars.append(("asked for (context_less)", COLOURS["intended"], intended))
    height = 0.8 / max(len(bars), 1)
    for k, (title, colour, shares) in enumerate(bars):
        values = [shares.get(label, 0.0) for label in LABELS]
        axes.barh(positions + k * height, values, height=height, label=title, color=colour)
    axes.set_yticks(positions + height * (len(bars) - 1) / 2, LABELS)
    axes.set_ylim(len(LABELS), -1 + height)  # admiration on top
    axes.set_xlabel("share of examples")
    figure.suptitle("Labels given versus emotions asked for", y=0.985)
    if bars:  # an empty dataset has nothing to label
        figure.legend(loc="upper center", bbox_to_anchor=(0.5, 0.96), ncols=len(bars))
    return figure


def _heatmap(matrix: np.ndarray, title: str, rows: str, columns: str, legend: str) -> Figure:
    figure = _new_figure(9, 8.4, (0.14, 0.9, 0.17, 0.95))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9))
    ticks = np.arange(len(LABELS))
    axes.set_xticks(ticks, LABELS, rotation=90)
    axes.set_yticks(ticks, LABELS)
    axes.set_xlabel(columns)
    axes.set_ylabel(rows)
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label=legend, fraction=0.04, pad=0.02)
    return figure


def _row_shares(pairs: dict[str, dict[str, int]], totals: dict[str, float]) -> np.ndarray:
    """matrix[r, c]: of the examples with row label r, the share with column label c."""
    matrix = np.zeros((len(LABELS), len(LABELS)))
    for r, first in enumerate(LABELS):
        for c, second in enumerate(LABELS):
            count = pairs.get(first, {}).get(second, 0)
            matrix[r, c] = count / totals[first] if totals.get(first) else 0.0
    return matrix


def _intended_vs_labels(report: QualityReport) -> Figure:
    config = report.configs.context_less
    pairs = config.intended_vs_labels if config else {}
    asked = _counts(config, config.intended_distribution) if config else {}
    return _heatmap(
        _row_shares(pairs, asked),
        "Emotion asked for versus labels given (context_less)",
        "intended emotion",
        "label",
        "share of the examples asked for the row's emotion",
    )


def _cooccurrence(report: QualityReport) -> Figure:
    config = report.configs.context_less
    pairs = config.label_cooccurrence if config else {}
    labelled = _counts(config, config.label_distribution) if config else {}
    return _heatmap(
        _row_shares(pairs, labelled),
        "Label co-occurrence (context_less)",
        "label",
        "label given with it",
        "share of the row label's examples",
    )


def _counts(config: ConfigQuality, shares: dict[str, float]) -> dict[str, float]:
    # The shares are rounded: back to whole examples.
    return {label: float(round(value * config.rows)) for label, value in shares.items()}


def _intensity(report: QualityReport) -> Figure:
    figure = _new_figure(7, 4, (0.1, 0.98, 0.22, 0.9))
    axes = figure.add_subplot()
    configs = _configs(report)
    width = 0.8 / max(len(configs), 1)
    for k, (name, config) in enumerate(configs):
        bins = list(config.intensity_histogram)
        total = sum(config.intensity_histogram.values()) or 1
        values = [config.intensity_histogram[b] / total for b in bins]
        axes.bar(np.arange(len(bins)) + k * width, values, width, label=name, color=COLOURS[name])
        axes.set_xticks(np.arange(len(bins)) + width * (len(configs) - 1) / 2, bins, rotation=45)
    axes.set_xlabel("intensity of a kept label")
    axes.set_ylabel("share of labels")
    axes.set_title("Label intensities")
    if configs:  # labels below the threshold are not kept: the left end stays empty
        axes.legend(loc="upper left")
    return figure


def _rejects(report: QualityReport) -> Figure:
    # A stage's rejects are whole answers (labels) or single items of an answer (an actor of
    # an actors answer): kept items and rejects by reason are the same unit, so they add up.
    figure = _new_figure(9, 4.5, (0.16, 0.66, 0.13, 0.9))
    axes = figure.add_subplot()
    stages = list(report.stages)
    reasons = sorted({reason for s in report.stages.values() for reason in s.reject_reasons})
    totals = [
        report.stages[s].outputs + sum(report.stages[s].reject_reasons.values()) for s in stages
    ]
    positions = np.arange(len(stages))
    left = np.zeros(len(stages))

    def segment(counts: list[int], title: str, colour: str) -> None:
        shares = np.asarray(counts, dtype=np.float64) / np.maximum(totals, 1)
        axes.barh(positions, shares, left=left, label=title, color=colour)
        left[:] += shares

    segment([report.stages[s].outputs for s in stages], "kept", KEPT)
    for k, reason in enumerate(reasons):
        colour = REASON_COLOURS[k % len(REASON_COLOURS)]
        segment([_reason(report.stages[s], reason) for s in stages], reason, colour)
    axes.set_yticks(positions, [f"{s} ({total})" for s, total in zip(stages, totals, strict=True)])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("share of a stage's items, kept or rejected (their number in brackets)")
    axes.set_title("Kept, and rejected by reason, per stage")
    axes.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    return figure


def _reason(stage: StageYield, reason: str) -> int:
    return stage.reject_reasons.get(reason, 0)


def _configs(report: QualityReport) -> list[tuple[str, ConfigQuality]]:
    found = (("context_less", report.configs.context_less),
             ("context_aware", report.configs.context_aware))  # fmt: skip
    return [(name, config) for name, config in found if config is not None]


# file name -> (what the card calls it, how it is drawn), in the card's order
FIGURES: dict[str, tuple[str, Callable[[QualityReport], Figure]]] = {
    "label_distribution.png": ("Label distribution", _label_distribution),
    "intended_vs_labels.png": ("Intended emotion versus labels", _intended_vs_labels),
    "intensity.png": ("Label intensities", _intensity),
    "label_cooccurrence.png": ("Label co-occurrence", _cooccurrence),
    "rejects.png": ("Rejects per stage", _rejects),
}


def figure_path(name: str) -> str:
    """Where a figure lives, relative to the dataset folder."""
    return f"{FIGURES_DIR}/{name}"


def write_figures(report: QualityReport, dataset_dir: Path) -> list[str]:
    """Draw every figure into dataset_dir/figures/; the paths written, relative to it."""
    folder = dataset_dir / FIGURES_DIR
    import matplotlib.style

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.style.context("default"):  # not the user's matplotlibrc
        for name, (_, draw) in FIGURES.items():
            draw(report).savefig(folder / name, format="png", metadata={"Software": None})
            written.append(figure_path(name))
    return written
