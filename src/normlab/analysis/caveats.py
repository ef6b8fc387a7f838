"""What the verdict says before any comparison: contexts where the task cannot tell the levels
apart (every cell at the ceiling, or at chance), and runs that diverged at a selected lr.

A *saturated* context is one where every cell sits at the ceiling (each of its runs at the
selected lr reaches at least :data:`CEILING` test accuracy) or at chance (each of its runs there
collapsed or diverged). Its differences are not evidence about the compared factor, whatever a
test says: the task does not discriminate. Such a context is named first, with what would make
the task discriminate, and the verdict draws no winner from it.
"""

from __future__ import annotations

from typing import Any

from .compare import CellStats

CEILING = 0.995
"""Test accuracy at or above which a run is at the ceiling: on a few hundred test examples, at
most one or two errors, so differences between cells are a handful of examples."""

HARDER = (
    "fewer training examples (--max-train), noisier inputs, augmentation (--augment), "
    "or a harder data set (--data)"
)
LEARNABLE = (
    "check the learning-rate grid, train longer (more epochs), "
    "or try an easier task or more training examples"
)


def saturation(members: list[CellStats]) -> str | None:
    """``"ceiling"``, ``"chance"`` or None for the cells of one context (two or more)."""
    if len(members) < 2:
        return None
    if all(c.test_by_seed and min(c.test_by_seed.values()) >= CEILING for c in members):
        return "ceiling"
    if all(
        c.summary.seeds and c.summary.collapsed + c.summary.diverged == c.summary.seeds
        for c in members
    ):
        return "chance"
    return None


def saturation_sentence(where: str, kind: str, compare: str, baseline: str) -> str:
    if kind == "ceiling":
        return (
            f"At {where}, every level of {compare} reaches the ceiling (every run at least "
            f"{100 * CEILING:.1f}% test accuracy): the task is too easy to tell them apart, and "
            f"nothing there is evidence for or against {baseline}. To make it discriminate: "
            f"{HARDER}."
        )
    return (
        f"At {where}, every level of {compare} finished at chance (every run collapsed or "
        f"diverged): the task was not learned, and nothing there is evidence for or against "
        f"{baseline}. To make it discriminate: {LEARNABLE}."
    )


def divergence_sentence(cell: CellStats, where: str) -> str:
    """A cell whose selected lr diverged on some seeds: they count as accuracy 0."""
    summary = cell.summary
    return (
        f"At {where}, {cell.label} diverged on {summary.diverged} of its {summary.seeds} seeds "
        f"at its selected lr {summary.selected_lr:g}; each diverged run counts as test accuracy "
        "0 in the comparisons, as it did in the validation mean that selected the lr."
    )


def diverged_cells(cells: list[CellStats]) -> list[CellStats]:
    return [c for c in cells if c.summary.diverged]


def context_where(context: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in context.items())
