"""The adaptive protocol's comparisons, from store records: which are answered, which are open.

An adaptive study tags each run with a *role* (``Store.records()`` key ``role``): ``tune`` runs
(tuning seeds, every lr of a cell's grid) select the cell's learning rate on validation
accuracy, exactly as :func:`.summary.summarize` selects it; ``eval`` runs (evaluation seeds 0, 1,
2, ..., trained in rounds at the selected lr) are the only ones compared, so the seeds that chose
the lr never judge it. Within a context the cells are paired by evaluation seed and judged by
:func:`.sequential.assess` at the look their common seeds reach; the differences are those of the
first ``look`` seeds in seed order (the seeds of that round), so that each look of the schedule
is used once per comparison, as the spending argument requires.

A diverged evaluation run counts as :data:`.summary.DIVERGED_ACCURACY`, as in the fixed protocol.
Pure functions over records; no I/O.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from .sequential import Assessment, SequentialDesign, assess
from .summary import (
    DIVERGED_ACCURACY,
    EVALUATE,
    TUNE,
    cell_key,
    context,
    full_cell,
    summarize,
    variant,
)

MAX_TEST_EXAMPLES = 10**7
"""Largest test split :func:`resolution` considers (accuracies are counts over it)."""


@dataclass(frozen=True)
class AssessedComparison:
    """Baseline against one alternative in one context, judged sequentially."""

    context: dict[str, Any]
    baseline: str
    alternative: str
    assessment: Assessment
    rounds: int
    """Evaluation rounds the comparison's seeds come from (the highest round number)."""
    differences: tuple[float, ...] = ()
    """Per-seed differences (baseline - alternative) at the look, in seed order."""


def tuning_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("role") == TUNE]


def evaluation_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("role") == EVALUATE]


def selected_lrs(records: list[dict[str, Any]]) -> dict[str, float]:
    """Selected lr per cell key (:func:`.summary.cell_key` of the full cell), from tuning runs."""
    return {cell_key(s.cell): s.selected_lr for s in summarize(tuning_records(records))}


def resolution(records: list[dict[str, Any]]) -> float:
    """Accuracy of one test example: one over the smallest test-set size every recorded test
    accuracy is a whole count of (a divisor of the real size at worst, which only widens the
    floor it sets). 0 when no accuracy is recorded."""
    denominator = 1
    for record in records:
        for key in ("test_acc", "test_acc_batch_stats"):
            value = record.get(key)
            if value is None or not math.isfinite(value):
                continue
            fraction = Fraction(value).limit_denominator(MAX_TEST_EXAMPLES)
            denominator = math.lcm(denominator, fraction.denominator)
            if denominator > MAX_TEST_EXAMPLES:
                return 0.0
    return 1.0 / denominator if denominator > 1 else 0.0


def _test_by_seed(
    runs: list[dict[str, Any]], lr: float | None
) -> tuple[dict[int, float], dict[int, int]]:
    """Test accuracy and round per evaluation seed at ``lr``."""
    found: dict[int, float] = {}
    rounds: dict[int, int] = {}
    for run in runs:
        if lr is not None and run["config"]["lr"] != lr:
            continue
        if run["status"] == "diverged":
            found[run["config"]["seed"]] = DIVERGED_ACCURACY
        elif run["status"] == "done" and run.get("test_acc") is not None:
            found[run["config"]["seed"]] = run["test_acc"]
        else:
            continue
        rounds[run["config"]["seed"]] = int(run.get("round") or 0)
    return found, rounds


def assess_study(
    records: list[dict[str, Any]],
    design: SequentialDesign,
    baseline: str,
    compare: str = "norm",
) -> list[AssessedComparison]:
    """Every (context, alternative) comparison with the ``baseline`` level of ``compare``, in
    first-seen order; ``design.comparisons`` is set to their number (the Bonferroni family)."""
    lrs = selected_lrs(records)
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cells: dict[str, dict[str, Any]] = {}
    for record in evaluation_records(records):
        cell = full_cell(record)
        by_cell[cell_key(cell)].append(record)
        cells.setdefault(cell_key(cell), cell)
    by_context: dict[str, list[str]] = defaultdict(list)
    for key, cell in cells.items():
        by_context[cell_key(context(cell, compare))].append(key)
    drafts = []
    for context_key, keys in by_context.items():
        base = next((k for k in keys if variant(cells[k], compare) == baseline), None)
        if base is None:
            continue
        base_seeds, base_rounds = _test_by_seed(by_cell[base], lrs.get(base))
        for key in keys:
            if key == base:
                continue
            other, other_rounds = _test_by_seed(by_cell[key], lrs.get(key))
            seeds = sorted(set(base_seeds) & set(other))
            diffs = [base_seeds[s] - other[s] for s in seeds]
            label = variant(cells[key], compare)
            rounds = [max(base_rounds[s], other_rounds[s]) for s in seeds]
            drafts.append((json.loads(context_key), label, diffs, rounds))
    design = replace(design, comparisons=max(1, len(drafts)))
    floor = resolution(records)
    assessed = []
    for group, label, diffs, rounds in drafts:
        look = design.look_at(len(diffs))
        at_look = diffs[:look] if look is not None else diffs
        # The rounds the seeds at the look come from (not a later round still unfinished).
        reached = max(rounds[: len(at_look)], default=0)
        assessed.append(
            AssessedComparison(
                context=group,
                baseline=baseline,
                alternative=label,
                assessment=assess(at_look, design, floor),
                rounds=reached,
                differences=tuple(at_look),
            )
        )
    return assessed


def open_contexts(
    records: list[dict[str, Any]],
    design: SequentialDesign,
    baseline: str,
    compare: str = "norm",
) -> list[dict[str, Any]]:
    """Contexts with an unresolved comparison below ``max_seeds``: the next round's work."""
    found: dict[str, dict[str, Any]] = {}
    for item in assess_study(records, design, baseline, compare):
        if item.assessment.resolved or item.assessment.seeds >= design.max_seeds:
            continue
        found.setdefault(cell_key(item.context), item.context)
    return list(found.values())
