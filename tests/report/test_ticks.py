"""Tick labels: overlaps found from the rendered boxes, and rotated away."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from normlab.report.ticks import separate_tick_labels, tick_label_overlaps  # noqa: E402


def crowded_figure():
    figure, axes = plt.subplots(figsize=(3.0, 2.0))
    labels = [f"level {i}, B={2**i}" for i in range(12)]
    axes.plot(range(12), range(12))
    axes.set_xticks(range(12), labels)
    return figure


def test_overlapping_labels_are_found_and_rotated_apart():
    figure = crowded_figure()
    assert any(o.startswith("axes 0 x:") for o in tick_label_overlaps(figure))
    separate_tick_labels(figure)
    assert tick_label_overlaps(figure) == []
    assert figure.axes[0].get_xticklabels()[0].get_rotation() in (45.0, 90.0)
    plt.close(figure)


def test_labels_that_fit_are_left_alone():
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    axes.plot([2, 4, 8], [1, 2, 3])
    axes.set_xticks([2, 4, 8], ["2", "4", "8"])
    assert tick_label_overlaps(figure) == []
    separate_tick_labels(figure)
    assert axes.get_xticklabels()[0].get_rotation() == 0.0
    plt.close(figure)
