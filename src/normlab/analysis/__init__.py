"""Analysis: pure functions over plain run records (aggregation, lr selection, winners)."""

from .summary import CellSummary, Winner, format_mean_std, summarize, winners

__all__ = ["CellSummary", "Winner", "format_mean_std", "summarize", "winners"]
