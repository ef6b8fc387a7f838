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

from typing import Any

from normlab.errors import NormlabError
from normlab.norms import norm_entry

from .compare import ALPHA, CellStats, Comparison, paired_comparisons

PRECISE_SUFFIX = " + PreciseBN"
"""The name of the baseline recalibrated by PreciseBN, after the baseline's own."""


def within_noise(remedy: Comparison) -> bool:
    """A candidate (``remedy.baseline``) not significantly below the best alternative
    (``remedy.alternative``); needs a test: at least 2 seeds."""
    if remedy.p_holm is None:
        return False
    return (remedy.difference or 0.0) >= 0 or remedy.p_holm >= ALPHA


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
) -> Comparison | None:
    """The best candidate of one context (``members``: its cells) against ``versus``, as a
    :class:`~.compare.Comparison` of candidate (``baseline``) minus ``versus``
    (``alternative``): the best within noise, else the closest; None without any candidate or
    any shared seed."""
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
            diffs = [by_seed[s] - target.test_by_seed[s] for s in seeds]
            drafts.append((target.context, name, versus, diffs))
    if not drafts:
        return None
    remedies = paired_comparisons(drafts)
    return max(remedies, key=lambda r: (within_noise(r), r.difference))
