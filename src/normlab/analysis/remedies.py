"""The remedies that keep BN, where BN loses: for the verdict's recommendation.

Where the baseline (BN) is significantly below an alternative of a context, a user's next
question is whether a BN variant recovers the loss without changing the architecture. The
candidates are the study's levels whose registry entry ``keeps_bn`` (Batch Renorm, ghost BN,
MABN, CBN, EvalNorm; never an ``ablation`` such as ``cbn_naive``) and PreciseBN recalibration of
the baseline's own runs, read from their ``gap`` records. Each is compared with that alternative
by seed (candidate minus alternative), with two tests, each Holm-corrected over the candidates
of the context:

- *equivalent within ±margin*: two one-sided t-tests (TOST; Schuirmann 1987) that the mean
  paired difference lies inside (-margin, margin), :data:`EQUIVALENCE_MARGIN` = 1 point by
  default. "Not significantly below" would reward the noisiest candidate, and more candidates (a
  stronger correction) would make it easier to pass; an equivalence test has to show closeness.
- *significantly better*: the paired t-test, as the baseline's comparisons.

A candidate is offered when it is equivalent or significantly better; candidates are ranked by
mean, each with its interval. The TOST interval is the (1 - 2a) t-interval at the Holm-effective
level a (:func:`~.statistics.holm_level`): it lies inside ±margin exactly when the candidate is
declared equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from normlab.errors import NormlabError
from normlab.norms import norm_entry

from .compare import ALPHA, CellStats, Comparison, paired_comparisons
from .statistics import MIN_SEEDS_FOR_CI, Interval, equivalence_test, holm, holm_level, t_interval
from .wording import interval, points

PRECISE_SUFFIX = " + PreciseBN"
"""The name of the baseline recalibrated by PreciseBN, after the baseline's own."""
EQUIVALENCE_MARGIN = 0.01
"""Equivalence margin of a remedy against the alternative, in accuracy (0.01 = 1 point)."""


@dataclass(frozen=True)
class Remedy:
    """One candidate against the alternative it should replace, in one context."""

    comparison: Comparison
    """Candidate (``baseline``) minus alternative (``alternative``): difference, t-test."""
    margin: float
    p_equivalence: float | None
    """TOST p-value; None below three pairs."""
    p_equivalence_holm: float | None
    ci_equivalence: Interval | None
    """The (1 - 2a) t-interval at the Holm-effective level a of the TOST."""

    @property
    def name(self) -> str:
        return self.comparison.baseline

    @property
    def equivalent(self) -> bool:
        return self.p_equivalence_holm is not None and self.p_equivalence_holm < ALPHA

    @property
    def better(self) -> bool:
        return self.comparison.significant and (self.comparison.difference or 0.0) > 0

    @property
    def acceptable(self) -> bool:
        """Shown equivalent within the margin, or significantly better."""
        return self.equivalent or self.better


def keeps_bn(level: Any) -> bool:
    """Whether ``level`` of the norm factor is a remedy that keeps BN (registry flags)."""
    try:
        entry = norm_entry(str(level).split("(")[0])  # a label may carry options: mabn(...)
    except (NormlabError, KeyError):
        return False
    return entry.keeps_bn and not entry.ablation


def rank_remedies(
    members: list[CellStats],
    baseline: str,
    versus: str,
    baseline_gaps: dict[int, dict[str, Any]],
    margin: float = EQUIVALENCE_MARGIN,
) -> list[Remedy]:
    """Every candidate of one context (``members``: its cells) against ``versus``, ranked by
    mean difference (best first); empty without a candidate or a shared seed."""
    target = next((c for c in members if c.label == versus), None)
    if target is None:
        return []
    candidates = {
        str(c.label): c.test_by_seed
        for c in members
        if c.label not in (baseline, versus) and keeps_bn(c.label)
    }
    base = next((c for c in members if c.label == baseline), None)
    if baseline_gaps and base is not None:
        # Every seed of the baseline's cell: a run that diverged has no gap record (nothing to
        # recalibrate) and keeps the accuracy it counts with in the cell, DIVERGED_ACCURACY.
        candidates[f"{baseline}{PRECISE_SUFFIX}"] = {
            seed: baseline_gaps[seed]["precise_acc"] if seed in baseline_gaps else accuracy
            for seed, accuracy in base.test_by_seed.items()
        }
    drafts = []
    for name, by_seed in candidates.items():
        seeds = sorted(set(by_seed) & set(target.test_by_seed))
        if seeds:
            diffs = [by_seed[s] - target.test_by_seed[s] for s in seeds]
            drafts.append((target.context, name, versus, diffs))
    if not drafts:
        return []
    comparisons = paired_comparisons(drafts)
    p_tost = [
        equivalence_test(d, margin) if len(d) >= MIN_SEEDS_FOR_CI else None for *_, d in drafts
    ]
    remedies = []
    for comparison, p, p_holm in zip(comparisons, p_tost, holm(p_tost), strict=True):
        ci = None
        if p is not None and p_holm is not None:
            level = holm_level(p, p_holm, ALPHA)
            ci = t_interval(comparison.differences, 1.0 - 2.0 * level)
        remedies.append(Remedy(comparison, margin, p, p_holm, ci))
    return sorted(remedies, key=lambda r: -(r.comparison.difference or 0.0))


def best_remedy(remedies: list[Remedy]) -> Remedy | None:
    """The best-mean acceptable candidate, else the best-mean one (the closest)."""
    acceptable = [r for r in remedies if r.acceptable]
    return (acceptable or remedies or [None])[0]


def remedy_line(remedy: Remedy, versus: str, margin: float) -> str:
    c = remedy.comparison
    if remedy.ci_equivalence is not None:
        tost = (
            f"TOST {interval(remedy.ci_equivalence, 'interval')}, "
            f"Holm p = {remedy.p_equivalence_holm:.2g}"
        )
    elif remedy.p_equivalence_holm is not None:
        tost = f"TOST Holm p = {remedy.p_equivalence_holm:.2g}"
    else:
        tost = "no TOST: fewer than 3 seeds"
    if remedy.better:
        status = f"significantly better than {versus}"
    elif remedy.equivalent:
        status = f"equivalent within ±{points(margin)} points"
    else:
        status = "not shown equivalent"
    return f"{remedy.name} {points(c.difference or 0.0)} points ({tost}: {status})"


def remedy_sentence(ranked: list[Remedy], versus: str, margin: float) -> str:
    """The remedies that keep BN against ``versus``, ranked by mean, and the best acceptable."""
    listed = "; ".join(remedy_line(r, versus, margin) for r in ranked)
    best = best_remedy(ranked)
    head = (
        f"Remedies that keep BN there, against {versus} (candidate - {versus}, ranked by mean; "
        f"equivalence: two one-sided tests within ±{points(margin)} points, Holm over the "
        f"candidates): {listed}."
    )
    if best is not None and best.acceptable:
        how = (
            f"significantly better than {versus}"
            if best.better
            else f"equivalent to {versus} within ±{points(margin)} points"
        )
        return f"{head} The best, {best.name}, is {how}."
    return (
        f"{head} No remedy that keeps BN is shown equivalent to {versus} within "
        f"±{points(margin)} points there (the closest by mean: {ranked[0].name})."
    )
