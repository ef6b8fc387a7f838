"""The best remedy that keeps BN, where BN loses: for the verdict's recommendation.

Where the baseline (BN) is significantly below the best alternative of a context, a user's
next question is whether a BN variant recovers the loss without changing the architecture. The
candidates are the study's levels whose registry entry ``keeps_bn`` (Batch Renorm, ghost BN,
MABN, CBN, EvalNorm; never an ``ablation`` such as ``cbn_naive``) and PreciseBN recalibration of
the baseline's own runs, read from their ``gap`` records. Each is compared with the best
alternative by seed, as the baseline is (paired t-test, Holm-corrected over the candidates of the
context, percentile-bootstrap CI): *within noise* when it is not significantly below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any

from normlab.errors import NormlabError
from normlab.norms import norm_entry

from .compare import ALPHA, CellStats
from .statistics import Interval, bootstrap_ci, holm, paired_t_test

PRECISE_SUFFIX = " + PreciseBN"
"""The name of the baseline recalibrated by PreciseBN, after the baseline's own."""


@dataclass(frozen=True)
class Remedy:
    """One candidate against the best alternative of a context, paired by seed."""

    context: dict[str, Any]
    name: str
    versus: str
    seeds: int
    difference: float
    """Mean over seeds of (candidate - best alternative) test accuracy."""
    ci: Interval | None
    p_holm: float | None

    @property
    def within_noise(self) -> bool:
        """Not significantly below the best alternative (needs a test: at least 2 seeds)."""
        if self.p_holm is None:
            return False
        return self.difference >= 0 or self.p_holm >= ALPHA


def keeps_bn(level: Any) -> bool:
    """Whether ``level`` of the norm factor is a remedy that keeps BN (registry flags)."""
    try:
        entry = norm_entry(str(level).split("(")[0])  # a label may carry options: mabn(...)
    except (NormlabError, KeyError):
        return False
    return entry.keeps_bn and not entry.ablation


def best_remedy(
    members: list[CellStats],
    baseline: str,
    versus: str,
    baseline_gaps: dict[int, dict[str, Any]],
) -> Remedy | None:
    """The best candidate of one context (``members``: its cells) against ``versus``: the best
    within noise, else the closest; None without any candidate or any shared seed."""
    target = next((c for c in members if c.label == versus), None)
    if target is None:
        return None
    candidates = {
        str(c.label): c.test_by_seed
        for c in members
        if c.label not in (baseline, versus) and keeps_bn(c.label)
    }
    if baseline_gaps:
        candidates[f"{baseline}{PRECISE_SUFFIX}"] = {
            seed: gap["precise_acc"] for seed, gap in baseline_gaps.items()
        }
    drafts = []
    for name, by_seed in candidates.items():
        seeds = sorted(set(by_seed) & set(target.test_by_seed))
        if seeds:
            drafts.append((name, [by_seed[s] - target.test_by_seed[s] for s in seeds]))
    if not drafts:
        return None
    adjusted = holm([paired_t_test(diffs) for _, diffs in drafts])
    remedies = [
        Remedy(
            context=target.context,
            name=name,
            versus=versus,
            seeds=len(diffs),
            difference=fmean(diffs),
            ci=bootstrap_ci(diffs),
            p_holm=p,
        )
        for (name, diffs), p in zip(drafts, adjusted, strict=True)
    ]
    return max(remedies, key=lambda r: (r.within_noise, r.difference))
