"""A BN deficit decomposed by its inference statistics: PreciseBN - EMA test accuracy of the
baseline's runs, paired by seed (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm": EMA
running statistics lag the weights, and recomputing them on the final weights (PreciseBN) shows
how much of a small-batch deficit is the estimate rather than training)."""

from __future__ import annotations

import statistics
from typing import Any

from .compare import CellStats
from .statistics import MIN_SEEDS_FOR_CI, t_interval
from .wording import interval


def precise_gain(cell: CellStats, gaps: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """PreciseBN - EMA test accuracy of ``cell``'s seeds (``gaps``: seed ->
    ``GapReport.to_dict()``), paired by seed: mean difference and its 95% t-interval, with the
    mean EMA, PreciseBN and batch-statistics accuracies; None without any gap record. A seed
    without a record (a run that diverged: nothing to recalibrate) counts with the accuracy it
    has in the cell under all three, so the means agree with the cell's."""
    if not any(s in gaps for s in cell.test_by_seed):
        return None
    found = [
        gaps.get(s, {f"{key}_acc": accuracy for key in ("running", "precise", "batch")})
        for s, accuracy in cell.test_by_seed.items()
    ]
    differences = [g["precise_acc"] - g["running_acc"] for g in found]
    means = {
        key: statistics.fmean(g[f"{key}_acc"] for g in found)
        for key in ("running", "precise", "batch")
    }
    return {
        **means,
        "difference": statistics.fmean(differences),
        "ci": t_interval(differences),
        "seeds": len(found),
    }


def gain_interval(gain: dict[str, Any]) -> str:
    if gain["ci"] is None and gain["seeds"] >= MIN_SEEDS_FOR_CI:
        return "no CI: identical differences"
    return interval(gain["ci"])
