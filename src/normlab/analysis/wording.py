"""How numbers read in the verdict's sentences: accuracy differences in percentage points with
one decimal, intervals with the label that says which interval they are."""

from __future__ import annotations

from .statistics import Interval


def points(value: float) -> str:
    """An accuracy difference in percentage points, one decimal."""
    return f"{100 * value:.1f}"


def interval(ci: Interval | None, label: str = "95% CI") -> str:
    if ci is None:
        return "no CI: fewer than 3 seeds"
    return f"{label} {points(ci.low)} to {points(ci.high)}"
