"""The study's question as numbers: per-cell statistics, paired comparisons against the baseline
level of the compared factor, the crossover batch size. Pure functions over store records.

The compared factor is the spec's ``[study] compare`` (``norm`` by default); its first level is
the baseline (``bn``). A *context* is the levels of every other factor (e.g. the batch size):
comparisons are made within a context, each cell at its own selected lr, paired by seed (seed s
gives every cell the same data order). Under the adaptive protocol only evaluation runs (role
``"eval"``) are compared; the tuning runs that selected the lr are not (``summary.py``). The
family of tests that Holm's correction covers is every (context, alternative) comparison of the
study (the adaptive protocol's sequential tests are :mod:`.adaptive`'s).

Every planned seed of the selected lr is accounted for: a run that diverged there counts as test
accuracy 0 (:data:`DIVERGED_ACCURACY`), the value it already had in the validation mean that
selected the lr, so an lr that diverges on some seeds costs on test what it cost in selection
(dropping the run would report the survivors only). A collapsed run finished ``done`` at chance
and counts with its measured accuracy. A comparison with fewer than
:data:`~.statistics.MIN_SEEDS_FOR_CI` pairs gets no test and is never significant.
"""

from __future__ import annotations

import json
import statistics as _stats
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .statistics import (
    MIN_SEEDS_FOR_CI,
    Interval,
    cohens_dz,
    holm,
    holm_level,
    mean,
    paired_t_test,
    std,
    t_interval,
)
from .summary import (
    DIVERGED_ACCURACY,
    CellSummary,
    cell_key,
    context,
    full_cell,
    reported_runs,
    selection_runs,
    summarize,
    variant,
)

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
    """Test accuracy per seed at the selected lr (finished runs; a diverged one as
    :data:`DIVERGED_ACCURACY`)."""
    mean: float | None
    std: float | None
    ci: Interval | None
    """95% t-interval of the mean; None below three seeds or without spread."""
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
    """Pairs: seeds finished in both cells (a diverged run as :data:`DIVERGED_ACCURACY`)."""
    difference: float | None
    """mean over seeds of (baseline - alternative) test accuracy; negative: the baseline is worse."""
    ci: Interval | None
    """Unadjusted 95% t-interval of the mean difference; None below three pairs or when the
    differences are identical (sign-flip test, no spread to scale)."""
    p_value: float | None
    """Paired t-test (sign-flip when the differences are identical); None below three pairs."""
    p_holm: float | None
    effect_size: float | None
    """Cohen's d_z of the paired differences (baseline - alternative)."""
    ci_adjusted: Interval | None = None
    """The t-interval at the level Holm effectively tested this comparison
    (:func:`~.statistics.holm_level`): it excludes 0 exactly when ``p_holm`` < alpha. The
    verdict's claims quote it."""
    differences: tuple[float, ...] = ()
    """The per-seed differences, in seed order."""

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA and self.seeds >= MIN_SEEDS_FOR_CI


def _seed_accuracies(records: list[dict[str, Any]], lr: float) -> dict[int, float]:
    """Test accuracy per seed at ``lr``: finished runs, a diverged one as DIVERGED_ACCURACY."""
    found = {}
    for r in records:
        if r["config"]["lr"] != lr:
            continue
        if r["status"] == "diverged":
            found[r["config"]["seed"]] = DIVERGED_ACCURACY
        elif r["status"] == "done" and r["test_acc"] is not None:
            found[r["config"]["seed"]] = r["test_acc"]
    return found


def _lr_spread(
    records: list[dict[str, Any]], summary: CellSummary
) -> tuple[tuple[float, ...], float | None]:
    # The tolerance is the seed noise of runs that trained: a diverged run is not noise, and its
    # 0 would widen the set of "equally good" lrs to the whole grid.
    vals = [
        r["val_acc"]
        for r in records
        if r["config"]["lr"] == summary.selected_lr and r["status"] == "done"
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
        # Adaptive cells: evaluation seeds are compared, tuning seeds chose the lr (and say how
        # much the choice matters); fixed-protocol runs do both.
        by_seed = _seed_accuracies(reported_runs(runs), summary.selected_lr)
        values = list(by_seed.values())
        top, spread = _lr_spread(selection_runs(runs), summary)
        result.append(
            CellStats(
                summary=summary,
                label=variant(summary.cell, compare),
                context=context(summary.cell, compare),
                test_by_seed=by_seed,
                mean=mean(values) if values else None,
                std=std(values),
                ci=t_interval(values),
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
    p-values Holm-corrected over all of them (one family); below three pairs no test."""
    p_values = [paired_test(d) for *_, d in drafts]
    adjusted = holm(p_values)
    return [
        Comparison(
            context=group,
            baseline=base,
            alternative=label,
            seeds=len(diffs),
            difference=mean(diffs) if diffs else None,
            ci=t_interval(diffs),
            p_value=p,
            p_holm=p_adjusted,
            effect_size=cohens_dz(diffs),
            ci_adjusted=adjusted_interval(diffs, p, p_adjusted),
            differences=tuple(diffs),
        )
        for (group, base, label, diffs), p, p_adjusted in zip(
            drafts, p_values, adjusted, strict=True
        )
    ]


def paired_test(differences: list[float]) -> float | None:
    """The paired test of a comparison; None below :data:`MIN_SEEDS_FOR_CI` pairs."""
    return paired_t_test(differences) if len(differences) >= MIN_SEEDS_FOR_CI else None


def adjusted_interval(
    differences: list[float], p_value: float | None, p_holm: float | None, alpha: float = ALPHA
) -> Interval | None:
    """The t-interval at the Holm-effective level of one comparison (None without a test)."""
    if p_value is None or p_holm is None:
        return None
    return t_interval(differences, 1.0 - holm_level(p_value, p_holm, alpha))


@dataclass(frozen=True)
class Crossover:
    """Where the baseline stops losing, along the batch size, in one context of other factors."""

    context: dict[str, Any]
    worse_up_to: int | None
    """Largest batch size at which some alternative is significantly better than the baseline."""
    fine_from: int | None
    """Smallest batch size at which no alternative is significantly better than the baseline."""


def best_alternative(comparisons: list[Comparison]) -> Comparison | None:
    """The comparison against the alternative with the best mean (most negative difference)."""
    measured = [c for c in comparisons if c.difference is not None]
    return min(measured, key=lambda c: c.difference) if measured else None


def best_significant(comparisons: list[Comparison]) -> Comparison | None:
    """Of the alternatives that beat the baseline significantly, the one with the best mean;
    None when none does. Every alternative is judged, not only the best mean: a noisy best mean
    may be not significant while another alternative beats the baseline clearly."""
    return best_alternative([c for c in comparisons if better(c)])


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
        worse = [size for size, cs in by_size.items() if best_significant(cs) is not None]
        fine = [size for size, cs in by_size.items() if not any(better(c) for c in cs)]
        result.append(Crossover(json.loads(key), max(worse, default=None), min(fine, default=None)))
    return result


def better(comparison: Comparison) -> bool:
    """The alternative is significantly better than the baseline."""
    return comparison.significant and (comparison.difference or 0.0) < 0
