"""Tick labels that do not overlap: found from the rendered figure, rotated until they fit.

A figure's tick labels depend on the study (how many batch sizes, levels, learning rates), so a
layout that fits one study overlaps on another. :func:`separate_tick_labels` runs on every
figure before it is saved (``figures.png_bytes``): it measures each label's box with the figure's own
renderer and rotates the x labels of an axes whose labels overlap, 45 then 90 degrees.
"""

from __future__ import annotations

import itertools
from typing import Any

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

ROTATIONS = (45, 90)
"""Tried in turn on an axes whose x tick labels overlap: slanted labels keep reading left to
right; vertical ones take the least width (one line height per label)."""


def _drawn_labels(axis: Axis) -> list[Text]:
    """The tick labels the renderer draws: visible, non-empty, at a tick inside the view."""
    low, high = sorted(axis.get_view_interval())
    margin = (high - low) * 1e-9
    labels = []
    for ticks, locations in (
        (axis.get_major_ticks(), axis.get_majorticklocs()),
        (axis.get_minor_ticks(), axis.get_minorticklocs()),
    ):
        for tick, location in zip(ticks, locations, strict=False):
            label = tick.label1
            inside = low - margin <= location <= high + margin
            if inside and tick.get_visible() and label.get_visible() and label.get_text():
                labels.append(label)
    return labels


def _axis_overlaps(axis: Axis, renderer: Any) -> list[tuple[str, str]]:
    boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in _drawn_labels(axis)]
    # Boxes that share an edge or a pixel of antialiasing do not collide on paper: half a
    # pixel of tolerance.
    return [
        (first, second)
        for (first, a), (second, b) in itertools.combinations(boxes, 2)
        if a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5
    ]


def _renderer(figure: Any) -> Any:
    """The figure's Agg renderer after a full draw (tick positions and texts are set on draw);
    a figure closed by pyplot gets an Agg canvas again."""
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def tick_label_overlaps(figure: Any) -> list[str]:
    """Every pair of overlapping tick labels of ``figure``, as ``"axes 0 x: '2' / '4'"``."""
    renderer = _renderer(figure)
    found = []
    for index, axes in enumerate(figure.axes):
        for name, axis in (("x", axes.xaxis), ("y", axes.yaxis)):
            found += [
                f"axes {index} {name}: {a!r} / {b!r}" for a, b in _axis_overlaps(axis, renderer)
            ]
    return found


def separate_tick_labels(figure: Any) -> None:
    """Rotate the x tick labels of every axes of ``figure`` whose labels overlap."""
    renderer = _renderer(figure)
    for axes in figure.axes:
        for rotation in ROTATIONS:
            if not _axis_overlaps(axes.xaxis, renderer):
                break
            axes.tick_params(axis="x", labelrotation=rotation)
            for label in axes.get_xticklabels(which="both"):
                label.set_horizontalalignment("right" if rotation < 90 else "center")
                label.set_rotation_mode("anchor" if rotation < 90 else "default")
            figure.canvas.draw()
