"""The study's question as numbers: per-cell statistics, paired comparisons against the baseline
level of the compared factor, the crossover batch size. Pure functions over store records.

The compared factor is the spec's ``[study] compare`` (``norm`` by default); its first level is
the baseline (``bn``). A *context* is the levels of every other factor (e.g. the batch size):
comparisons are made within a context, each cell at its own selected lr, paired by seed (seed s
gives every cell the same data order). The family of tests that Holm's correction covers is every
(context, alternative) comparison of the study.
"""

from __future__ import annotations

import json
import statistics as _stats
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .statistics import Interval, bootstrap_ci, cohens_dz, holm, mean, paired_t_test, std
from .summary import CellSummary, cell_key, context, full_cell, summarize, variant

ALPHA = 0.05
"""Family-wise error rate of the Holm-corrected tests."""


@dataclass(frozen=True)
class CellStats:
    """One cell at its selected lr: test accuracy over seeds, and how much the lr choice matters."""

    summary: CellSummary
    label: str
    """Level of the compared factor, with its scoped options (``gn(groups=2)``)."""
    context: dict[str, Any]
    test_by_seed: dict[int, float]
    """Test accuracy per seed at the selected lr (runs that finished ``done``)."""
    mean: float | None
    std: float | None
    ci: Interval | None
    """95% bootstrap interval of the mean; None below three seeds."""
    top_lrs: tuple[float, ...]
    """LRs whose mean val accuracy is within one val std (over seeds, at the selected lr) of the
    selected lr's."""
    lr_test_spread: float | None
    """max - min of the mean test accuracy over ``top_lrs``: what the lr choice is worth on test."""


@dataclass(frozen=True)
class Comparison:
    """Baseline minus one alternative in one context, paired by seed."""

    context: dict[str, Any]
    baseline: str
    alternative: str
    seeds: int
    """Pairs: seeds finished ``done`` in both cells."""
    difference: float | None
    """mean over seeds of (baseline - alternative) test accuracy; negative: the baseline is worse."""
    ci: Interval | None
    p_value: float | None
    p_holm: float | None
    effect_size: float | None
    """Cohen's d_z of the paired differences."""

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def _seed_accuracies(records: list[dict[str, Any]], lr: float) -> dict[int, float]:
    return {
        r["config"]["seed"]: r["test_acc"]
        for r in records
        if r["config"]["lr"] == lr and r["status"] == "done" and r["test_acc"] is not None
    }


def _lr_spread(
    records: list[dict[str, Any]], summary: CellSummary
) -> tuple[tuple[float, ...], float | None]:
    vals = [
        r["val_acc"] if r["status"] == "done" else 0.0
        for r in records
        if r["config"]["lr"] == summary.selected_lr and r["status"] in ("done", "diverged")
    ]
    tolerance = _stats.stdev(vals) if len(vals) > 1 else 0.0
    best = summary.val_by_lr[summary.selected_lr]
    top = tuple(lr for lr, v in sorted(summary.val_by_lr.items()) if v >= best - tolerance)
    tests = [list(_seed_accuracies(records, lr).values()) for lr in top]
    means = [mean(t) for t in tests if t]
    return top, (max(means) - min(means)) if len(means) > 1 else None


def cell_statistics(records: list[dict[str, Any]], compare: str = "norm") -> list[CellStats]:
    """Every cell with a finished run, at its selected lr, in the order of the records."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_cell[cell_key(full_cell(record))].append(record)
    result = []
    for summary in summarize(records):
        runs = by_cell[cell_key(summary.cell)]
        by_seed = _seed_accuracies(runs, summary.selected_lr)
        values = list(by_seed.values())
        top, spread = _lr_spread(runs, summary)
        result.append(
            CellStats(
                summary=summary,
                label=variant(summary.cell, compare),
                context=context(summary.cell, compare),
                test_by_seed=by_seed,
                mean=mean(values) if values else None,
                std=std(values),
                ci=bootstrap_ci(values),
                top_lrs=top,
                lr_test_spread=spread,
            )
        )
    return result


def group_by_context(cells: list[CellStats]) -> list[tuple[dict[str, Any], list[CellStats]]]:
    """Cells grouped by context, in first-seen order."""
    groups: dict[str, list[CellStats]] = defaultdict(list)
    for cell in cells:
        groups[cell_key(cell.context)].append(cell)
    return [(json.loads(key), members) for key, members in groups.items()]


def compare_cells(cells: list[CellStats], baseline: str) -> list[Comparison]:
    """Baseline against every other level in each context; Holm over all of them."""
    drafts = []
    for group, members in group_by_context(cells):
        base = next((c for c in members if c.label == baseline), None)
        if base is None:
            continue
        for other in members:
            if other is base:
                continue
            seeds = sorted(set(base.test_by_seed) & set(other.test_by_seed))
            diffs = [base.test_by_seed[s] - other.test_by_seed[s] for s in seeds]
            drafts.append((group, baseline, other.label, diffs))
    return paired_comparisons(drafts)


def paired_comparisons(
    drafts: list[tuple[dict[str, Any], str, str, list[float]]],
) -> list[Comparison]:
    """One :class:`Comparison` per (context, baseline, alternative, per-seed differences), the
    p-values Holm-corrected over all of them (one family)."""
    adjusted = holm([paired_t_test(d) for *_, d in drafts])
    return [
        Comparison(
            context=group,
            baseline=base,
            alternative=label,
            seeds=len(diffs),
            difference=mean(diffs) if diffs else None,
            ci=bootstrap_ci(diffs),
            p_value=paired_t_test(diffs),
            p_holm=p_adjusted,
            effect_size=cohens_dz(diffs),
        )
        for (group, base, label, diffs), p_adjusted in zip(drafts, adjusted, strict=True)
    ]


@dataclass(frozen=True)
class Crossover:
    """Where the baseline stops losing, along the batch size, in one context of other factors."""

    context: dict[str, Any]
    worse_up_to: int | None
    """Largest batch size at which the baseline is significantly worse than the best alternative."""
    fine_from: int | None
    """Smallest batch size at which no alternative is significantly better than the baseline."""


def best_alternative(comparisons: list[Comparison]) -> Comparison | None:
    """The comparison against the alternative with the best mean (most negative difference)."""
    measured = [c for c in comparisons if c.difference is not None]
    return min(measured, key=lambda c: c.difference) if measured else None


def crossovers(comparisons: list[Comparison], axis: str = "batch_size") -> list[Crossover]:
    """One :class:`Crossover` per context of the factors other than ``axis``."""
    by_rest: dict[str, dict[int, list[Comparison]]] = defaultdict(lambda: defaultdict(list))
    for comparison in comparisons:
        if axis not in comparison.context:
            continue
        rest = {k: v for k, v in comparison.context.items() if k != axis}
        by_rest[cell_key(rest)][comparison.context[axis]].append(comparison)
    result = []
    for key, by_size in by_rest.items():
        worse = [size for size, cs in by_size.items() if _significantly_worse(cs)]
        fine = [size for size, cs in by_size.items() if not any(_better(c) for c in cs)]
        result.append(Crossover(json.loads(key), max(worse, default=None), min(fine, default=None)))
    return result


def _better(comparison: Comparison) -> bool:
    """The alternative is significantly better than the baseline."""
    return comparison.significant and (comparison.difference or 0.0) < 0


def _significantly_worse(comparisons: list[Comparison]) -> bool:
    best = best_alternative(comparisons)
    return best is not None and _better(best)
