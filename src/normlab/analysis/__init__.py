"""Analysis: pure functions over plain run records (aggregation, lr selection, winners)."""

from .summary import (
    CellSummary,
    LearningRateRange,
    Winner,
    context,
    format_mean_std,
    summarize,
    usable_lr_range,
    variant,
    winners,
)

__all__ = [
    "CellSummary",
    "LearningRateRange",
    "Winner",
    "context",
    "format_mean_std",
    "summarize",
    "usable_lr_range",
    "variant",
    "winners",
]
