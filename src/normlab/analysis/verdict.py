"""The verdict: sentences computed from the comparisons, never a template that assumes an outcome.

Each sentence states a number with its interval and the test behind it. The baseline is
*significantly worse* at a batch size when the alternative with the best mean beats it with a
Holm-adjusted p < 0.05; *significantly better* when it beats every alternative so; otherwise it is
*within noise of the best*. With fewer than three seeds there is no interval, and the verdict says
so. When the store holds inference-statistics gap records (``diagnostics.gap``) for the baseline,
the deficit is decomposed: how much of it PreciseBN recalibration recovers (Wu & Johnson 2021).
When the compared factor is the norm, each deficit also names the best remedy that keeps BN
(:mod:`.remedies`), and the recommendation offers it where it is within noise of the best
alternative.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .compare import ALPHA, CellStats, Comparison, best_alternative
from .remedies import best_remedy, keeps_bn, within_noise
from .statistics import MIN_SEEDS_FOR_CI, Interval
from .summary import cell_key


@dataclass(frozen=True)
class Verdict:
    sentences: tuple[str, ...]
    recommendation: str
    switch_to: tuple[str, ...] = ()
    """The levels the recommendation says to use instead of the baseline, in its order."""

    @property
    def paragraph(self) -> str:
        return " ".join((*self.sentences, self.recommendation))


def points(value: float) -> str:
    """An accuracy difference in percentage points, one decimal."""
    return f"{100 * value:.1f}"


def interval(ci: Interval | None) -> str:
    if ci is None:
        return "no CI: fewer than 3 seeds"
    return f"95% CI {points(ci.low)} to {points(ci.high)}"


def _p(comparison: Comparison) -> str:
    if comparison.p_holm is None:
        return "no test: fewer than 2 seeds"
    return f"Holm p = {comparison.p_holm:.2g}"


def _where(context: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in context.items())


def gap_recovery(cell: CellStats, gaps: dict[int, dict[str, Any]]) -> dict[str, float] | None:
    """Mean EMA, PreciseBN and batch-statistics accuracy of ``cell``'s seeds that have a gap
    record (``gaps``: seed -> ``GapReport.to_dict()``); None without any."""
    found = [gaps[s] for s in cell.test_by_seed if s in gaps]
    if not found:
        return None
    return {
        key: statistics.fmean(g[f"{key}_acc"] for g in found)
        for key in ("running", "precise", "batch")
    }


def verdict(
    cells: list[CellStats],
    comparisons: list[Comparison],
    compare: str,
    baseline: str,
    gaps: dict[str, dict[int, dict[str, Any]]] | None = None,
    axis: str = "batch_size",
) -> Verdict:
    """Sentences about ``baseline`` against the other levels of ``compare``.

    ``gaps``: cell key -> seed -> gap record, for the decomposition of a deficit.
    """
    gaps = gaps or {}
    if not comparisons:
        return Verdict(
            (f"The study has no level of {compare} to compare with {baseline}.",),
            "No recommendation: nothing was compared.",
        )
    by_context: dict[str, list[Comparison]] = defaultdict(list)
    for comparison in comparisons:
        by_context[cell_key(comparison.context)].append(comparison)
    base_cells = {cell_key(c.context): c for c in cells if c.label == baseline}
    members_of: dict[str, list[CellStats]] = defaultdict(list)
    for cell in cells:
        members_of[cell_key(cell.context)].append(cell)
    remedies: dict[str, Comparison] = {}
    worse, better, tied = [], [], []
    for members in by_context.values():
        best = best_alternative(members)
        if best is None:
            continue
        if best.significant and best.difference < 0:
            worse.append(best)
        elif all(c.significant and (c.difference or 0) > 0 for c in members):
            better.append(min(members, key=lambda c: c.difference or 0))
        else:
            tied.append(best)
    seeds = min(c.seeds for c in comparisons)
    sentences = []
    if seeds < MIN_SEEDS_FOR_CI:
        sentences.append(
            f"With {seeds} seed(s) per cell there are no confidence intervals: the differences "
            "below are point estimates."
        )
    for best in _ordered(worse, axis):
        text = (
            f"At {_where(best.context)}, {baseline}'s test accuracy is "
            f"{points(-best.difference)} points below {best.alternative} "
            f"({interval(_negated(best.ci))}, {_p(best)}, d_z = {_dz(best)}, {best.seeds} seeds)"
        )
        base = base_cells.get(cell_key(best.context))
        base_gaps = gaps.get(cell_key(base.summary.cell), {}) if base else {}
        recovered = gap_recovery(base, base_gaps) if base else None
        if recovered is not None:
            deficit = -best.difference
            gain = recovered["precise"] - recovered["running"]
            text += (
                f"; PreciseBN recalibration recovers {100 * gain / deficit:.0f}% of that gap "
                f"(EMA {points(recovered['running'])}%, PreciseBN {points(recovered['precise'])}%,"
                f" batch statistics {points(recovered['batch'])}%)"
            )
        sentences.append(text + ".")
        if compare == "norm" and not keeps_bn(best.alternative):
            remedy = best_remedy(
                members_of[cell_key(best.context)], baseline, best.alternative, base_gaps
            )
            if remedy is not None:
                remedies[cell_key(best.context)] = remedy
                sentences.append(_remedy_sentence(remedy))
    behind = [c for c in tied if c.difference < 0]
    if behind:
        within = _ordered(behind, axis)
        largest = min(within, key=lambda c: c.difference)
        sentences.append(
            f"At {_list_where(within, axis)}, {baseline} is within noise of the best "
            f"(largest gap to the best alternative: {baseline} - {largest.alternative} = "
            f"{points(largest.difference)} points at {_where(largest.context)}, "
            f"{interval(largest.ci)}, "
            f"{_p(largest)})."
        )
    ahead = [c for c in tied if c.difference >= 0]
    if ahead:
        within = _ordered(ahead, axis)
        smallest = min(within, key=lambda c: c.difference)
        sentences.append(
            f"At {_list_where(within, axis)}, {baseline} has the best mean, but not "
            f"significantly (smallest lead over the next best: {baseline} - "
            f"{smallest.alternative} = {points(smallest.difference)} points at "
            f"{_where(smallest.context)}, {interval(smallest.ci)}, {_p(smallest)})."
        )
    for best in _ordered(better, axis):
        sentences.append(
            f"At {_where(best.context)}, {baseline} is significantly better than every "
            f"alternative, by at least {points(best.difference)} points over {best.alternative} "
            f"({interval(best.ci)}, {_p(best)})."
        )
    # Where the baseline is not the clear winner, it may still beat some alternatives.
    tied_keys = {cell_key(c.context) for c in tied}
    wins = [
        c
        for c in comparisons
        if c.significant and (c.difference or 0) > 0 and cell_key(c.context) in tied_keys
    ]
    for alternative in dict.fromkeys(c.alternative for c in _ordered(wins, axis)):
        found = [c for c in _ordered(wins, axis) if c.alternative == alternative]
        details = "; ".join(
            f"{points(c.difference)} points at {_where(c.context)}, {interval(c.ci)}, {_p(c)}"
            for c in found
        )
        sentences.append(
            f"{baseline} is significantly better than {alternative} at "
            f"{_list_where(found, axis)} ({details})."
        )
    significant = any(c.significant for c in comparisons)
    if not significant:
        sentences.append(
            f"No difference between {baseline} and the other levels of {compare} is significant "
            f"(Holm-corrected over {len(comparisons)} paired comparisons at alpha = {ALPHA})."
        )
    recommendation = _recommend(worse, better, tied, significant, baseline, axis, remedies, compare)
    switch_to = tuple(dict.fromkeys(c.alternative for c in _ordered(worse, axis)))
    return Verdict(tuple(sentences), recommendation, switch_to if significant else ())


def _remedy_sentence(remedy: Comparison) -> str:
    """``remedy``: the candidate (``baseline``) against the best alternative."""
    numbers = (
        f"{remedy.baseline} - {remedy.alternative} = {points(remedy.difference or 0.0)} points, "
        f"{interval(remedy.ci)}, {_p(remedy)}"
    )
    if within_noise(remedy):
        return (
            f"The best remedy there that keeps BN, {remedy.baseline}, is within noise of "
            f"{remedy.alternative} ({numbers})."
        )
    return (
        f"No remedy that keeps BN comes within noise of {remedy.alternative} there (the "
        f"closest, {remedy.baseline}: {numbers})."
    )


def _recommend(
    worse: list[Comparison],
    better: list[Comparison],
    tied: list[Comparison],
    significant: bool,
    baseline: str,
    axis: str,
    remedies: dict[str, Comparison],
    compare: str,
) -> str:
    if not significant:
        return (
            f"Recommendation: the data show no reason to change {baseline}; a smaller difference "
            "would need more seeds to resolve."
        )
    if not worse:
        return f"Recommendation: keep {baseline}; no alternative beats it significantly here."
    by_alternative: dict[tuple[str, str | None], list[Comparison]] = defaultdict(list)
    for comparison in _ordered(worse, axis):
        remedy = remedies.get(cell_key(comparison.context))
        kept = remedy.baseline if remedy is not None and within_noise(remedy) else None
        by_alternative[(comparison.alternative, kept)].append(comparison)
    switches = "; ".join(
        f"at {_list_where(members, axis)} use {alternative}"
        + (" (it keeps BN)" if compare == "norm" and keeps_bn(alternative) else "")
        + (f", or keep BN with {kept}, within noise of it" if kept else "")
        for (alternative, kept), members in by_alternative.items()
    )
    keep = [c for c in (*tied, *better) if c.context]
    text = f"Recommendation: {switches}"
    if keep:
        text += f"; keep {baseline} at {_list_where(_ordered(keep, axis), axis)}"
    return text + "."


def _ordered(comparisons: list[Comparison], axis: str) -> list[Comparison]:
    return sorted(comparisons, key=lambda c: (str(_rest(c, axis)), c.context.get(axis, 0)))


def _rest(comparison: Comparison, axis: str) -> dict[str, Any]:
    return {k: v for k, v in comparison.context.items() if k != axis}


def _list_where(comparisons: list[Comparison], axis: str) -> str:
    """``batch_size 16, 32 and 128`` when only the axis varies, else each context in full."""
    rests = {cell_key(_rest(c, axis)) for c in comparisons}
    if len(rests) == 1 and all(axis in c.context for c in comparisons):
        sizes = [str(c.context[axis]) for c in comparisons]
        listed = sizes[0] if len(sizes) == 1 else f"{', '.join(sizes[:-1])} and {sizes[-1]}"
        prefix = _where(_rest(comparisons[0], axis))
        return f"{axis.replace('_', ' ')} {listed}" + (f" ({prefix})" if prefix else "")
    return "; ".join(_where(c.context) for c in comparisons)


def _negated(ci: Interval | None) -> Interval | None:
    return None if ci is None else Interval(-ci.high, -ci.low)


def _dz(comparison: Comparison) -> str:
    return "n/a" if comparison.effect_size is None else f"{comparison.effect_size:.1f}"
