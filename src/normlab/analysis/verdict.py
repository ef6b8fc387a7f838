"""The verdict: sentences computed from the comparisons, never a template that assumes an outcome.

Each sentence states a number with its interval and the test behind it. Every alternative is
judged, not only the best mean: the baseline is *significantly worse* in a context when any
alternative beats it with a Holm-adjusted p < 0.05 (the sentence names the best such
alternative, and separately the best mean when that one is not significant);
*significantly better* when it beats every alternative so; otherwise it is *within noise of the
best*. Claims quote the Holm-adjusted interval (:attr:`~.compare.Comparison.ci_adjusted`),
which excludes 0 exactly when the Holm test rejects; tables show the unadjusted 95% interval
beside it. With fewer than three seeds there is no interval and no test, and the verdict says
so. Before any comparison the verdict names contexts where the task cannot discriminate (every
cell at the ceiling or at chance, :mod:`.caveats`) and runs that diverged at a selected lr.
When the store holds inference-statistics gap records (``diagnostics.gap``) for the baseline, a
deficit is decomposed by the paired difference PreciseBN - EMA over seeds, with its interval
(Wu & Johnson 2021). When the compared factor is the norm, each deficit also ranks the remedies
that keep BN (:mod:`.remedies`), and the recommendation offers the best one shown equivalent
to the alternative within the margin.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .caveats import (
    context_where as _where,
)
from .caveats import (
    diverged_cells,
    divergence_sentence,
    saturation,
    saturation_sentence,
)
from .compare import ALPHA, CellStats, Comparison, best_alternative, best_significant
from .decomposition import gain_interval, precise_gain
from .remedies import (
    EQUIVALENCE_MARGIN,
    Remedy,
    best_remedy,
    keeps_bn,
    rank_remedies,
    remedy_sentence,
)
from .statistics import MIN_SEEDS_FOR_CI, Interval
from .summary import cell_key
from .wording import interval, points


@dataclass(frozen=True)
class Verdict:
    sentences: tuple[str, ...]
    recommendation: str
    switch_to: tuple[str, ...] = ()
    """The levels the recommendation says to use instead of the baseline, in its order."""

    @property
    def paragraph(self) -> str:
        return " ".join((*self.sentences, self.recommendation))


def adjusted(comparison: Comparison, negate: bool = False) -> str:
    """The comparison's Holm-adjusted interval (negated: alternative - baseline), or why none."""
    return _interval_of(comparison, comparison.ci_adjusted, "Holm-adjusted CI", negate)


def unadjusted(comparison: Comparison) -> str:
    """The comparison's unadjusted 95% interval, or why none."""
    return _interval_of(comparison, comparison.ci, "95% CI", False)


def _interval_of(comparison: Comparison, ci: Interval | None, label: str, negate: bool) -> str:
    if ci is None:
        if comparison.seeds < MIN_SEEDS_FOR_CI:
            return "no CI: fewer than 3 seeds"
        return "no CI: identical paired differences, exact sign-flip test"
    return interval(ci.negated() if negate else ci, label)


def _p(comparison: Comparison) -> str:
    if comparison.p_holm is None:
        return "no test: fewer than 3 seeds"
    return f"Holm p = {comparison.p_holm:.2g}"


def verdict(
    cells: list[CellStats],
    comparisons: list[Comparison],
    compare: str,
    baseline: str,
    gaps: dict[str, dict[int, dict[str, Any]]] | None = None,
    axis: str = "batch_size",
    margin: float = EQUIVALENCE_MARGIN,
) -> Verdict:
    """Sentences about ``baseline`` against the other levels of ``compare``.

    ``gaps``: cell key -> seed -> gap record, for the decomposition of a deficit. ``margin``:
    the equivalence margin of a remedy (accuracy; 0.01 = 1 point).
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
    sentences = []
    saturated: dict[str, str] = {}
    for key in by_context:
        kind = saturation(members_of[key])
        if kind is not None:
            saturated[key] = kind
    for kind in ("ceiling", "chance"):
        found = [by_context[k][0] for k, v in saturated.items() if v == kind]
        if found:
            sentences.append(
                saturation_sentence(
                    _list_where(_ordered(found, axis), axis), kind, compare, baseline
                )
            )
    untested = [c for c in comparisons if c.seeds < MIN_SEEDS_FOR_CI]
    if len(untested) == len(comparisons):
        seeds = max(c.seeds for c in comparisons)
        sentences.append(
            f"With {seeds} seed(s) per cell there are no confidence intervals and no tests: the "
            "differences below are point estimates, none of them significant."
        )
    elif untested:
        sentences.append(
            f"Fewer than {MIN_SEEDS_FOR_CI} paired seeds, so no interval and no test, for "
            + "; ".join(
                f"{c.baseline} against {c.alternative}"
                + (f" at {_where(c.context)}" if c.context else "")
                + f" ({c.seeds} seed(s))"
                for c in _ordered(untested, axis)
            )
            + ": those differences are point estimates, none of them significant."
        )
    for cell in diverged_cells(cells):
        if cell_key(cell.context) in by_context:
            sentences.append(divergence_sentence(cell, _where(cell.context) or "every context"))
    remedies: dict[str, Remedy] = {}
    worse: list[Comparison] = []
    better: list[Comparison] = []
    tied: list[Comparison] = []
    best_means: dict[str, Comparison] = {}
    for key, members in by_context.items():
        best = best_alternative(members)
        if best is None or key in saturated:
            continue
        significant = best_significant(members)
        if significant is not None:
            worse.append(significant)
            best_means[key] = best
        elif all(c.significant and (c.difference or 0) > 0 for c in members):
            better.append(min(members, key=lambda c: c.difference or 0))
        else:
            tied.append(best)
    for best in _ordered(worse, axis):
        key = cell_key(best.context)
        text = (
            f"At {_where(best.context)}, {baseline}'s test accuracy is "
            f"{points(-best.difference)} points below {best.alternative} "
            f"({adjusted(best, negate=True)}, {_p(best)}, d_z = {_dz(best)}, {best.seeds} seeds)"
        )
        top = best_means[key]
        if top is not best:
            text += (
                f"; the best mean there, {top.alternative}'s, is {points(-top.difference)} points "
                f"above {baseline}, but not significantly ({adjusted(top, negate=True)}, {_p(top)})"
            )
        base = base_cells.get(key)
        base_gaps = gaps.get(cell_key(base.summary.cell), {}) if base else {}
        gain = precise_gain(base, base_gaps) if base else None
        if gain is not None:
            text += (
                f"; PreciseBN recalibration of {baseline}'s runs changes its accuracy by "
                f"{100 * gain['difference']:+.1f} points (PreciseBN - EMA, paired over "
                f"{gain['seeds']} seeds, {gain_interval(gain)}; EMA {points(gain['running'])}%, "
                f"PreciseBN {points(gain['precise'])}%, batch statistics {points(gain['batch'])}%)"
            )
        sentences.append(text + ".")
        if compare == "norm" and not keeps_bn(best.alternative):
            ranked = rank_remedies(members_of[key], baseline, best.alternative, base_gaps, margin)
            if ranked:
                remedies[key] = best_remedy(ranked)
                sentences.append(remedy_sentence(ranked, best.alternative, margin))
    behind = [c for c in tied if c.difference < 0]
    if behind:
        within = _ordered(behind, axis)
        largest = min(within, key=lambda c: c.difference)
        sentences.append(
            f"At {_list_where(within, axis)}, {baseline} is within noise of the best "
            f"(largest gap to the best alternative: {baseline} - {largest.alternative} = "
            f"{points(largest.difference)} points at {_where(largest.context)}, "
            f"{adjusted(largest)}, {_p(largest)})."
        )
    ahead = [c for c in tied if c.difference >= 0]
    if ahead:
        within = _ordered(ahead, axis)
        smallest = min(within, key=lambda c: c.difference)
        sentences.append(
            f"At {_list_where(within, axis)}, {baseline} has the best mean, but not "
            f"significantly (smallest lead over the next best: {baseline} - "
            f"{smallest.alternative} = {points(smallest.difference)} points at "
            f"{_where(smallest.context)}, {adjusted(smallest)}, {_p(smallest)})."
        )
    for best in _ordered(better, axis):
        sentences.append(
            f"At {_where(best.context)}, {baseline} is significantly better than every "
            f"alternative, by at least {points(best.difference)} points over {best.alternative} "
            f"({adjusted(best)}, {_p(best)})."
        )
    # Where the baseline is not the clear winner, it may still beat some alternatives.
    tied_keys = {cell_key(c.context) for c in tied} | {cell_key(c.context) for c in worse}
    wins = [
        c
        for c in comparisons
        if c.significant and (c.difference or 0) > 0 and cell_key(c.context) in tied_keys
    ]
    for alternative in dict.fromkeys(c.alternative for c in _ordered(wins, axis)):
        found = [c for c in _ordered(wins, axis) if c.alternative == alternative]
        details = "; ".join(
            f"{points(c.difference)} points at {_where(c.context)}, {adjusted(c)}, {_p(c)}"
            for c in found
        )
        sentences.append(
            f"{baseline} is significantly better than {alternative} at "
            f"{_list_where(found, axis)} ({details})."
        )
    judged = [c for c in comparisons if cell_key(c.context) not in saturated]
    significant = any(c.significant for c in judged)
    tested = [c for c in judged if c.p_holm is not None]
    if tested and not significant:
        sentences.append(
            f"No difference between {baseline} and the other levels of {compare} is significant "
            f"(Holm-corrected over {len(comparisons)} paired comparisons at alpha = {ALPHA})."
        )
    if judged and not tested:
        recommendation = (
            "Recommendation: none yet: with fewer than 3 seeds per cell nothing was tested; run "
            "the study with 3 or more seeds."
        )
    elif not judged:
        recommendation = (
            f"Recommendation: none yet: the task does not discriminate between the levels of "
            f"{compare}; make it discriminate (above) and run the study again."
        )
    else:
        recommendation = _recommend(
            worse, better, tied, significant, baseline, axis, remedies, compare, margin
        )
    unstable = [c for c in diverged_cells(cells) if c.label == baseline]
    if unstable and judged:
        listed = "; ".join(
            f"{_where(c.context) or 'the study'} ({c.summary.diverged} of {c.summary.seeds} seeds)"
            for c in unstable
        )
        recommendation += (
            f" Beware: {baseline} diverged at its selected lr at {listed}; its numbers there "
            "count those runs at accuracy 0."
        )
    switch_to = tuple(dict.fromkeys(c.alternative for c in _ordered(worse, axis)))
    recommends_a_switch = significant and judged and tested
    return Verdict(tuple(sentences), recommendation, switch_to if recommends_a_switch else ())


def _recommend(
    worse: list[Comparison],
    better: list[Comparison],
    tied: list[Comparison],
    significant: bool,
    baseline: str,
    axis: str,
    remedies: dict[str, Remedy],
    compare: str,
    margin: float,
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
        kept = remedy.name if remedy is not None and remedy.acceptable else None
        by_alternative[(comparison.alternative, kept)].append(comparison)
    switches = "; ".join(
        f"at {_list_where(members, axis)} use {alternative}"
        + (" (it keeps BN)" if compare == "norm" and keeps_bn(alternative) else "")
        + (f", or keep BN with {kept}, equivalent within ±{points(margin)} points" if kept else "")
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


def _dz(comparison: Comparison) -> str:
    """d_z of the gap the sentence states (alternative - baseline): positive, as the sentence."""
    return "n/a" if comparison.effect_size is None else f"{-comparison.effect_size:.1f}"
