"""The report's figures, rendered with matplotlib (Agg backend) from plain records only.

Each function returns a :class:`Figure`: PNG bytes, or none with a line saying which spec key or
option records the missing data, so that the report leaves the figure out and says why.
One style throughout: one colour per level of the compared factor (the baseline first, in the
tab10 palette), 6.4 x 3.6 inch panels at 110 dpi, grid lines light.
"""

from __future__ import annotations

import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: figures are files

import matplotlib.pyplot as plt  # noqa: E402

from normlab.analysis.compare import CellStats  # noqa: E402
from normlab.analysis.summary import cell_key, full_cell  # noqa: E402

from .ticks import separate_tick_labels  # noqa: E402

DPI = 110
STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 9,
    "figure.figsize": (6.4, 3.6),
}
GAP_KEY = "the gap diagnostic (run the study with diagnostics 'gap')"
NOISE_KEY = "the noise diagnostic (run the study with diagnostics 'noise')"
STABILITY_KEY = "the stability diagnostic (run the study with diagnostics 'stability')"


@dataclass(frozen=True)
class Figure:
    name: str
    """File stem (``accuracy_vs_batch``) and anchor."""
    title: str
    caption: str
    png: bytes | None = None
    missing: str | None = None
    """Why the figure is left out: which spec key or option records its data."""


def png_bytes(figure: Any) -> bytes:
    separate_tick_labels(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _colours(labels: list[str]) -> dict[str, Any]:
    palette = plt.get_cmap("tab10")
    return {label: palette(i % 10) for i, label in enumerate(labels)}


def _labels(cells: list[CellStats]) -> list[str]:
    return list(dict.fromkeys(c.label for c in cells))


def accuracy_vs_batch(cells: list[CellStats], compare: str) -> Figure:
    """Test accuracy at the selected lr vs batch size, one line per level, 95% t-interval bands (the
    Group Normalization paper's Figure 1, Wu & He 2018, for the study's data)."""
    name, title = "accuracy_vs_batch", f"Test accuracy vs batch size per {compare}"
    sizes = sorted({c.context.get("batch_size") for c in cells if "batch_size" in c.context})
    if len(sizes) < 2:
        return Figure(
            name, title, "", missing="needs two batch sizes or more: [factors] batch_size"
        )
    if not any(c.mean for c in cells):
        return Figure(name, title, "", missing="no cell has a finished (evaluation) run yet")
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots()
        colours = _colours(_labels(cells))
        for label in colours:
            points = sorted(
                (c.context["batch_size"], c) for c in cells if c.label == label and c.mean
            )
            if not points:
                continue
            xs = [size for size, _ in points]
            axes.plot(xs, [c.mean for _, c in points], "o-", color=colours[label], label=label)
            banded = [(size, c.ci) for size, c in points if c.ci is not None]
            if banded:
                axes.fill_between(
                    [s for s, _ in banded],
                    [ci.low for _, ci in banded],
                    [ci.high for _, ci in banded],
                    color=colours[label],
                    alpha=0.15,
                    linewidth=0,
                )
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(s) for s in sizes])
        axes.set_xlabel("batch size")
        axes.set_ylabel("test accuracy")
        axes.legend(title=compare, fontsize=8)
    return Figure(
        name,
        title,
        "Mean over seeds at each cell's selected lr; bands: 95% t-interval.",
        png_bytes(figure),
    )


def learning_curves(
    cells: list[CellStats], records: list[dict[str, Any]], curves: dict[str, list[dict[str, Any]]]
) -> Figure:
    """Validation accuracy per epoch at the smallest and largest batch size (selected lrs)."""
    name, title = "learning_curves", "Learning curves at small and large batch"
    if not any(curves.values()):
        return Figure(name, title, "", missing="per-epoch curves (table epochs) are empty")
    sizes = sorted({c.summary.cell.get("batch_size") for c in cells} - {None})
    panels = [sizes[0], sizes[-1]] if len(sizes) > 1 else sizes or [None]
    # Cells are matched by their canonical key (sorted JSON of the full cell): the store's cell
    # and the summary's cell hold the same levels in different key orders, so str(dict) never
    # matched and the figure came out empty.
    runs_by_cell: dict[tuple[str, float], list[str]] = defaultdict(list)
    for record in records:
        runs_by_cell[(cell_key(full_cell(record)), record["config"]["lr"])].append(record["run_id"])
    lines: dict[Any, list[tuple[str, list[float]]]] = {size: [] for size in panels}
    for size in panels:
        for cell in cells:
            if cell.summary.cell.get("batch_size") != size:
                continue
            key = (cell_key(cell.summary.cell), cell.summary.selected_lr)
            series = [curves.get(run_id, []) for run_id in runs_by_cell.get(key, [])]
            series = [s for s in series if s]
            if series:
                length = min(len(s) for s in series)
                mean = [statistics.fmean(s[i]["val_acc"] for s in series) for i in range(length)]
                lines[size].append((cell.label, mean))
    if not any(lines.values()):
        return Figure(
            name, title, "", missing="no run at a cell's selected lr has per-epoch curves"
        )
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False)
        colours = _colours(_labels(cells))
        for axis, size in zip(axes[0], panels, strict=True):
            for label, mean in lines[size]:
                # Markers: a one-epoch study has one point per cell, which a bare line hides.
                epochs = range(1, len(mean) + 1)
                axis.plot(epochs, mean, "o-", markersize=3, color=colours[label], label=label)
            if not lines[size]:
                axis.text(
                    0.5,
                    0.5,
                    "no curves at this batch size",
                    ha="center",
                    va="center",
                    transform=axis.transAxes,
                )
            axis.set_title(f"batch size {size}" if size is not None else "")
            axis.set_xlabel("epoch")
            axis.xaxis.get_major_locator().set_params(integer=True)
        axes[0][0].set_ylabel("validation accuracy")
        if axes[0][0].get_legend_handles_labels()[0]:
            axes[0][0].legend(fontsize=7)
    caption = "Mean over seeds at each cell's selected lr (cells of other factors overlaid)."
    return Figure(name, title, caption, png_bytes(figure))


def statistics_gap(gaps: dict[int, dict[str, list[float]]]) -> Figure:
    """EMA (running), PreciseBN and batch-statistics test accuracy per batch size.

    ``gaps``: batch size -> {"running"|"precise"|"batch": accuracies of the BN runs at their
    cells' selected lrs}."""
    name, title = "statistics_gap", "EMA vs PreciseBN vs batch statistics"
    if not gaps:
        return Figure(name, title, "", missing=f"recorded by {GAP_KEY}")
    sizes = sorted(gaps)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots()
        for kind, marker in (("running", "o"), ("precise", "s"), ("batch", "^")):
            means = [statistics.fmean(gaps[s][kind]) if gaps[s][kind] else math.nan for s in sizes]
            axes.plot(
                sizes, means, marker + "-", label={"running": "EMA (deployed)"}.get(kind, kind)
            )
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(s) for s in sizes])
        axes.set_xlabel("batch size")
        axes.set_ylabel("test accuracy")
        axes.legend(fontsize=8)
    caption = "Same weights, three choices of normalization statistics (Wu & Johnson 2021)."
    return Figure(name, title, caption, png_bytes(figure))


def batch_noise(noise: list[dict[str, Any]]) -> Figure:
    """Relative error of the batch mean vs batch size, averaged over layers and records, against
    the 1/sqrt(B) law of a mean of B independent examples (anchored at the smallest size)."""
    name, title = "batch_noise", "Batch-statistic noise vs batch size"
    errors: dict[int, list[float]] = defaultdict(list)
    for report in noise:
        for layer in report.get("layers", []):
            for size, error in zip(report["batch_sizes"], layer["mean_error"], strict=True):
                errors[size].append(error)
    if not errors:
        return Figure(name, title, "", missing=f"recorded by {NOISE_KEY}")
    sizes = sorted(errors)
    means = [statistics.fmean(errors[s]) for s in sizes]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots()
        axes.loglog(sizes, means, "o-", label="measured |mu_B - mu| / sigma", base=2)
        reference = [means[0] * math.sqrt(sizes[0] / s) for s in sizes]
        axes.loglog(sizes, reference, "--", color="grey", label="1/sqrt(B) reference", base=2)
        axes.set_xlabel("batch size")
        axes.set_ylabel("relative error of the batch mean")
        axes.legend(fontsize=8)
    caption = (
        "Mean over BN layers, in population standard deviations; slope -1/2 on log axes is "
        "the independent-examples law, which i.i.d. batches follow by construction: a "
        "consistency check, not evidence about the model."
    )
    return Figure(name, title, caption, png_bytes(figure))


def lr_sensitivity(cells: list[CellStats], compare: str) -> Figure:
    """Mean validation accuracy for each level x lr, one heatmap per batch size."""
    name, title = "lr_sensitivity", f"LR sensitivity ({compare} x lr, validation accuracy)"
    if all(len(c.summary.val_by_lr) < 2 for c in cells):
        return Figure(name, title, "", missing='needs an lr grid: [lr] mode = "tuned"')
    sizes = sorted({c.summary.cell.get("batch_size") for c in cells}, key=lambda s: (s is None, s))
    labels = _labels(cells)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1, len(sizes), squeeze=False, figsize=(max(6.4, 3.2 * len(sizes)), 2.6)
        )
        for axis, size in zip(axes[0], sizes, strict=True):
            members = [c for c in cells if c.summary.cell.get("batch_size") == size]
            lrs = sorted({lr for c in members for lr in c.summary.val_by_lr})
            grid = [
                [
                    next(
                        (c.summary.val_by_lr.get(lr, math.nan) for c in members if c.label == row),
                        math.nan,
                    )
                    for lr in lrs
                ]
                for row in labels
            ]
            image = axis.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
            axis.set_xticks(range(len(lrs)), [f"{lr:.2g}" for lr in lrs], rotation=60, fontsize=7)
            axis.set_yticks(range(len(labels)), labels)
            axis.set_title(f"batch size {size}" if size is not None else "", fontsize=8)
            axis.grid(False)
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    return Figure(name, title, "Blank: not tried. Diverged runs count as 0.", png_bytes(figure))


def stability(
    records: list[dict[str, Any]], diagnostics: dict[str, dict[str, Any]], compare: str
) -> Figure:
    """Per level and batch size, over every lr tried: the fraction of runs that diverged, that
    collapsed, and the mean loss instability (the fraction of a run's training during which its
    smoothed loss sat above its best so far beyond its noise; ``diagnostics/stability.py``).

    One panel per measure, batch sizes on x and one line per level, so that the tick labels are
    the few batch sizes whatever the number of levels. Stores written before the instability
    statistic hold a loss-spike count instead: it is not drawn (it counted per-batch noise), and
    the caption says the store lacks the statistic."""
    name, title = "stability", "Stability: divergence, collapse and loss instability"
    finished = [r for r in records if r["status"] in ("done", "diverged")]
    if not finished:
        return Figure(name, title, "", missing="no finished run")
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for record in finished:
        level = str(record["cell"].get(compare, record["config"].get(compare)))
        groups[(level, record["config"].get("batch_size"))].append(record)
    levels = list(dict.fromkeys(level for level, _ in groups))
    sizes = sorted({size for _, size in groups}, key=lambda s: (s is None, s))
    stored = [diagnostics.get(r["run_id"], {}).get("stability") for r in finished]
    measured = [s for s in stored if s is not None and s.get("instability") is not None]
    old = sum(1 for s in stored if s is not None and "instability" not in s)
    too_short = sum(1 for s in stored if s is not None and "instability" in s) - len(measured)
    panels = {
        "diverged": lambda runs: statistics.fmean(r["status"] == "diverged" for r in runs),
        "collapsed": lambda runs: statistics.fmean(bool(r.get("collapsed")) for r in runs),
    }
    if measured:
        panels["loss instability"] = lambda runs: _mean_instability(runs, diagnostics)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1, len(panels), sharey=True, squeeze=False, figsize=(3.2 * len(panels), 3.2)
        )
        colours = _colours(levels)
        for axis, (measure, value) in zip(axes[0], panels.items(), strict=True):
            for index, level in enumerate(levels):
                # A small sideways offset per level keeps equal values (mostly 0) apart.
                offset = (index - (len(levels) - 1) / 2) * 0.08
                points = [
                    (position + offset, value(groups[(level, size)]))
                    for position, size in enumerate(sizes)
                    if (level, size) in groups
                ]
                points = [(x, y) for x, y in points if y is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    axis.plot(xs, ys, "o-", markersize=4, color=colours[level], label=level)
            axis.set_xticks(range(len(sizes)), [str(size) for size in sizes])
            axis.set_xlim(-0.5, len(sizes) - 0.5)
            axis.set_ylim(-0.05, 1.05)
            axis.set_title(measure)
            axis.set_xlabel("batch size")
            axis.set_ylabel("fraction of training" if measure == "loss instability" else "")
        axes[0][0].set_ylabel("fraction of runs")
        # Outside the panels: inside, it would hide points near 1.
        axes[0][-1].legend(title=compare, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    caption = (
        "Over every lr tried. Diverged: non-finite or exploded loss. Collapsed: finished at chance."
    )
    if measured:
        thresholds = sorted({s["rise_threshold"] for s in measured})
        caption += (
            " Loss instability: mean over runs of the fraction of training (short windows of "
            "the run) whose mean loss rose more than "
            f"{' / '.join(f'{t:g}' for t in thresholds)} standard errors above the lowest "
            "before it; 0 for a loss that only fell or fluctuated within its noise."
        )
        if old:
            caption += f" {old} run(s) of an older normlab lack it."
        if too_short:
            caption += (
                f" {too_short} run(s) too short to judge (fewer steps than two loss windows) "
                "have no point."
            )
    elif old:
        caption += (
            " Loss instability: not in this store; it was written by an older normlab, which "
            "recorded a loss-spike count instead (it counted per-batch noise, not instability, "
            "and is not shown). Rerun the study into a new folder to measure it."
        )
    else:
        caption += f" Loss instability: recorded by {STABILITY_KEY}."
    return Figure(name, title, caption, png_bytes(figure))


def _mean_instability(
    runs: list[dict[str, Any]], diagnostics: dict[str, dict[str, Any]]
) -> float | None:
    values = [
        diagnostics.get(r["run_id"], {}).get("stability", {}).get("instability") for r in runs
    ]
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None
