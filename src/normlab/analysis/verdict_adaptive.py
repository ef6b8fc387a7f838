"""The verdict of an adaptive study: per context and comparison, what its evaluation seeds
resolved, with the interval whose exclusion of 0 is the test, and what a larger budget would buy.

Each comparison of the baseline with an alternative (:func:`.adaptive.assess_study`) ends in one
of four states (:class:`~.sequential.Assessment`): the baseline is *significantly worse* or
*better* (the repeated confidence interval of the difference excludes 0; its adjusted p-value is
below alpha exactly then), *equivalent within ±margin* (the interval lies inside the margin: two
one-sided tests at the same level), or *unresolved*. The sentences quote that repeated interval,
simultaneous over the looks of the sequential design and the study's comparisons, never an
unadjusted one beside an adjusted test. An unresolved comparison states its minimum detectable
effect (the half-width of its interval: the smallest difference these seeds could have called),
and, when the design projects that it would resolve by ``max_seeds``, the time that would take:
the seeds still missing times the measured wall time of one evaluation seed of its context (the
sum over the context's cells of their evaluation runs' mean ``wall_time``: one seed trains every
cell of the context).

Saturation and divergence come first (:mod:`.caveats`); a deficit keeps its decomposition by
PreciseBN and the remedies that keep BN (:mod:`.verdict`, :mod:`.remedies`; those remedy tests
are fixed-sample tests at the seeds run, Holm over the candidates, as the sentence says).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from .adaptive import AssessedComparison
from .caveats import context_where as _where
from .caveats import diverged_cells, divergence_sentence, saturation, saturation_sentence
from .compare import CellStats
from .decomposition import gain_interval, precise_gain
from .remedies import Remedy, best_remedy, keeps_bn, rank_remedies, remedy_sentence
from .sequential import Assessment, SequentialDesign
from .statistics import MIN_SEEDS_FOR_CI
from .summary import EVALUATE, FINISHED, cell_key, full_cell
from .verdict import Verdict
from .wording import points

STATUSES = ("worse", "better", "equivalent", "unresolved")
"""Assessment states, in the order a context's sentence lists them."""


def seconds_per_seed(
    records: list[dict[str, Any]], context: dict[str, Any], compare: str
) -> float | None:
    """Wall time of one evaluation seed of ``context``: the sum over its cells of the mean
    ``wall_time`` of their finished evaluation runs (one seed trains every cell of the context;
    a packed run's ``wall_time`` is its share of the pack); None before any."""
    times: dict[str, list[float]] = defaultdict(list)
    for record in records:
        cell = full_cell(record)
        if record.get("role") != EVALUATE or record["status"] not in FINISHED:
            continue
        if {k: v for k, v in cell.items() if k in context} != context or compare not in cell:
            continue
        if record.get("wall_time") is not None:
            times[cell_key(cell)].append(float(record["wall_time"]))
    return sum(statistics.fmean(t) for t in times.values()) if times else None


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def repeated(
    assessment: Assessment, alpha: float, negate: bool = False, first_look: int = MIN_SEEDS_FOR_CI
) -> str:
    """``repeated 95% CI -22.0 to -0.7`` (negated: alternative - baseline), or why none (the
    seeds are short of the design's ``first_look``, or the differences are identical)."""
    label = f"repeated {100 * (1 - alpha):g}% CI"
    if assessment.interval is None:
        first = max(first_look, MIN_SEEDS_FOR_CI)
        if assessment.seeds < first:
            return f"no {label}: fewer than {first} evaluation seeds"
        return f"no {label}: identical paired differences"
    ci = assessment.interval.negated() if negate else assessment.interval
    return f"{label} {points(ci.low)} to {points(ci.high)}"


def adjusted_p(assessment: Assessment) -> str:
    if assessment.p_value is None:
        return "no test: fewer than 3 evaluation seeds"
    return f"adjusted p = {assessment.p_value:.2g}"


def comparison_clause(
    item: AssessedComparison, design: SequentialDesign, seconds_per_seed: float | None
) -> str:
    """What one comparison resolved, as a clause of its context's sentence."""
    a, base, alt = item.assessment, item.baseline, item.alternative
    if a.status == "worse":
        return (
            f"significantly worse than {alt}, {points(-a.mean)} points below it ({alt} - {base}: "
            f"{repeated(a, design.alpha, negate=True)}, {adjusted_p(a)})"
        )
    if a.status == "better":
        return (
            f"significantly better than {alt}, {points(a.mean)} points above it ({base} - {alt}: "
            f"{repeated(a, design.alpha)}, {adjusted_p(a)})"
        )
    if a.status == "equivalent":
        return (
            f"equivalent to {alt} within ±{points(design.margin)} points ({base} - {alt} = "
            f"{points(a.mean)} points, {repeated(a, design.alpha)})"
        )
    if a.mean is None:
        return f"unresolved against {alt} (no evaluation seed of both has finished yet)"
    text = f"unresolved against {alt} ({base} - {alt} = {points(a.mean)} points, "
    text += f"{repeated(a, design.alpha, first_look=design.first_round)}"
    if a.detectable is not None:
        text += (
            f"; the smallest difference {a.seeds} seeds could resolve is ±{points(a.detectable)} "
            "points"
        )
    return text + f"; {_outlook(a, design, seconds_per_seed)})"


def _outlook(
    assessment: Assessment, design: SequentialDesign, seconds_per_seed: float | None
) -> str:
    missing = _missing_seeds(assessment)
    if assessment.interval is None:
        return (
            f"nothing is projected before the first look at {design.first_round} seeds"
            if assessment.seeds < design.first_round
            else "no spread to project from"
        )
    if missing is None:
        return (
            f"at the spread seen it would not resolve by max_seeds = {design.max_seeds}: the "
            "difference is too close to the edge of the margin, or the seeds too noisy"
        )
    if missing == 0:
        return "resolving at the next look"
    text = f"about {assessment.seeds_to_resolve} seeds would resolve it"
    if seconds_per_seed is not None:
        text += f", {missing} more: about {duration(missing * seconds_per_seed)} of training"
    return text


def _missing_seeds(assessment: Assessment) -> int | None:
    """Seeds a projection says are still missing; None where nothing is projected (no
    interval yet: no spread at a look to project from)."""
    if assessment.seeds_to_resolve is None or assessment.interval is None:
        return None
    return max(0, assessment.seeds_to_resolve - assessment.seeds)


def adaptive_verdict(
    cells: list[CellStats],
    assessed: list[AssessedComparison],
    design: SequentialDesign,
    records: list[dict[str, Any]],
    compare: str,
    baseline: str,
    gaps: dict[str, dict[int, dict[str, Any]]] | None = None,
) -> Verdict:
    """Sentences about ``baseline`` against the other levels of ``compare``, per context.

    ``gaps``: cell key -> seed -> gap record (the decomposition of a deficit, as
    :func:`.verdict.verdict`).
    """
    gaps = gaps or {}
    if not assessed:
        return Verdict(
            (f"No evaluation seeds yet compare {baseline} with another level of {compare}.",),
            "No recommendation: nothing was compared yet.",
        )
    by_context: dict[str, list[AssessedComparison]] = defaultdict(list)
    for item in assessed:
        by_context[cell_key(item.context)].append(item)
    members_of: dict[str, list[CellStats]] = defaultdict(list)
    for cell in cells:
        members_of[cell_key(cell.context)].append(cell)
    sentences = [_design_sentence(design, len(assessed))]
    saturated = {k: kind for k in by_context if (kind := saturation(members_of[k])) is not None}
    for kind in ("ceiling", "chance"):
        found = [_where(by_context[k][0].context) for k, v in saturated.items() if v == kind]
        if found:
            sentences.append(saturation_sentence("; ".join(found), kind, compare, baseline))
    for cell in diverged_cells(cells):
        if cell_key(cell.context) in by_context:
            sentences.append(divergence_sentence(cell, _where(cell.context) or "every context"))
    # Context key -> ("switch", the alternative to use) or ("keep" | "open" | "saturated", None).
    outcome: dict[str, tuple[str, str | None]] = {}
    remedies: dict[str, Remedy] = {}
    open_seconds: dict[str, float] = {}
    projected = 0  # open comparisons projected to resolve by max_seeds
    untimed = 0  # of those, the ones in contexts with no measured wall time per seed
    for key, items in by_context.items():
        items = sorted(
            items, key=lambda i: (STATUSES.index(i.assessment.status), i.assessment.mean or 0.0)
        )
        where = _where(items[0].context) or "the study's setting"
        per_seed = seconds_per_seed(records, items[0].context, compare)
        seeds = max(i.assessment.seeds for i in items)
        rounds = max(i.rounds for i in items)
        clauses = [comparison_clause(i, design, per_seed) for i in items]
        head = f"At {where} ({seeds} evaluation seeds in {rounds} round(s)), {baseline} is "
        if key in saturated:
            head = f"At {where} (saturated: no evidence either way), {baseline} is "
        sentences.append(head + "; ".join(clauses) + ".")
        if key in saturated:
            outcome[key] = ("saturated", None)
            continue
        worse = [i for i in items if i.assessment.status == "worse"]
        if worse:
            outcome[key] = ("switch", worse[0].alternative)  # the largest significant deficit
            sentences += _deficit_sentences(
                worse[0], members_of[key], baseline, compare, gaps, design, remedies
            )
        elif all(i.assessment.status in ("better", "equivalent") for i in items):
            outcome[key] = ("keep", None)
        else:
            outcome[key] = ("open", None)
        # Seeds still needed by each open comparison the design projects to resolve; the
        # context trains them for all its cells, so its time is the largest.
        missing = [
            seeds
            for i in items
            if i.assessment.status == "unresolved"
            and (seeds := _missing_seeds(i.assessment)) is not None
        ]
        projected += len(missing)
        if missing and per_seed is not None:
            open_seconds[key] = max(missing) * per_seed
        elif missing:
            untimed += len(missing)
    open_count = sum(i.assessment.status == "unresolved" for i in assessed)
    if open_count:
        sentences.append(
            _open_sentence(open_count, len(assessed), projected, open_seconds, design, untimed)
        )
    recommendation = _recommend(by_context, outcome, remedies, baseline, compare, design)
    switch_to = tuple(dict.fromkeys(alt for kind, alt in outcome.values() if kind == "switch"))
    return Verdict(tuple(sentences), recommendation, switch_to)


def _design_sentence(design: SequentialDesign, comparisons: int) -> str:
    return (
        f"Adaptive protocol: each cell's learning rate was selected on its tuning seeds; the "
        f"{comparisons} comparison(s) below use only evaluation seeds, added in rounds where a "
        f"comparison was open, with repeated {100 * (1 - design.alpha):g}% confidence intervals "
        f"that hold at every look and over all {comparisons} comparison(s) together (family-wise "
        f"error {design.alpha:g}); equivalence means the interval lies inside "
        f"±{points(design.margin)} points."
    )


def _deficit_sentences(
    item: AssessedComparison,
    members: list[CellStats],
    baseline: str,
    compare: str,
    gaps: dict[str, dict[int, dict[str, Any]]],
    design: SequentialDesign,
    remedies: dict[str, Remedy],
) -> list[str]:
    """The PreciseBN decomposition of the baseline's largest deficit, and the remedies."""
    sentences = []
    base = next((c for c in members if c.label == baseline), None)
    base_gaps = gaps.get(cell_key(base.summary.cell), {}) if base else {}
    gain = precise_gain(base, base_gaps) if base else None
    if gain is not None:
        sentences.append(
            f"There, PreciseBN recalibration of {baseline}'s runs changes its accuracy by "
            f"{100 * gain['difference']:+.1f} points (PreciseBN - EMA, paired over "
            f"{gain['seeds']} evaluation seeds, {gain_interval(gain)}; EMA "
            f"{points(gain['running'])}%, PreciseBN {points(gain['precise'])}%, batch "
            f"statistics {points(gain['batch'])}%)."
        )
    if compare == "norm" and not keeps_bn(item.alternative):
        ranked = rank_remedies(members, baseline, item.alternative, base_gaps, design.margin)
        if ranked:
            remedies[cell_key(item.context)] = best_remedy(ranked)
            sentences.append(
                remedy_sentence(ranked, item.alternative, design.margin)
                + " (Remedy tests are fixed-sample tests at the evaluation seeds run.)"
            )
    return sentences


def _open_sentence(
    open_count: int,
    total: int,
    projected: int,
    open_seconds: dict[str, float],
    design: SequentialDesign,
    untimed: int = 0,
) -> str:
    """How many comparisons are open and what a larger budget would buy: the resolution of
    the ``projected`` ones, in the time of the largest projection of each context where a wall
    time per seed was measured (``untimed`` of them are in contexts without one)."""
    text = f"{open_count} of {total} comparison(s) remain unresolved."
    if projected:
        others = (
            ""
            if projected == open_count
            else f" (the other {open_count - projected} not, at the spread seen)"
        )
        text += (
            f" A larger budget would resolve {projected} of them by max_seeds = "
            f"{design.max_seeds}, as the design projects{others}"
        )
        if open_seconds:
            text += (
                f": about {duration(sum(open_seconds.values()))} more of training in "
                f"{len(open_seconds)} context(s), at the wall time per evaluation seed measured "
                "here, on one worker (parallel workers divide it)"
            )
        if untimed:
            text += f" ({untimed} of them not timed: no wall time was recorded there)"
        text += " (rerun the same command with a larger --budget; finished runs are kept)."
    else:
        text += (
            f" At the spread seen none of them is projected to resolve by max_seeds = "
            f"{design.max_seeds}: read them as no difference larger than their detectable "
            "effect shown."
        )
    return text


def _recommend(
    by_context: dict[str, list[AssessedComparison]],
    outcome: dict[str, tuple[str, str | None]],
    remedies: dict[str, Remedy],
    baseline: str,
    compare: str,
    design: SequentialDesign,
) -> str:
    def where(keys: list[str]) -> str:
        return "; ".join(_where(by_context[k][0].context) or "the study's setting" for k in keys)

    parts = []
    for key, (kind, value) in outcome.items():
        if kind != "switch":
            continue
        part = f"at {where([key])} use {value}"
        if compare == "norm" and keeps_bn(value):
            part += " (it keeps BN)"
        remedy = remedies.get(key)
        if remedy is not None and remedy.acceptable:
            part += (
                f", or keep BN with {remedy.name}, equivalent within ±{points(design.margin)} "
                "points"
            )
        parts.append(part)
    keep = [k for k, (kind, _) in outcome.items() if kind == "keep"]
    if keep:
        parts.append(f"keep {baseline} at {where(keep)} (as good as every alternative or better)")
    still = [k for k, (kind, _) in outcome.items() if kind == "open"]
    if still:
        parts.append(f"undecided at {where(still)}: no significant deficit yet, not all resolved")
    if not parts:
        return (
            f"Recommendation: none: the task does not discriminate between the levels of "
            f"{compare} (above)."
        )
    return "Recommendation: " + "; ".join(parts) + "."
