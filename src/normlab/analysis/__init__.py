"""Analysis: pure functions over plain run records (aggregation, lr selection, winners)."""

from .summary import (
    CellSummary,
    Winner,
    context,
    format_mean_std,
    summarize,
    variant,
    winners,
)

__all__ = [
    "CellSummary",
    "Winner",
    "context",
    "format_mean_std",
    "summarize",
    "variant",
    "winners",
]
