"""The dry run of an adaptive study: its rounds inside the budget, and what each look could detect.

The plan is the worst case for time: every context stays open until ``max_seeds``, so every
round after the first trains ``round_seeds`` more seeds for every cell (a study whose
comparisons resolve early stops sooner). Each round's time is the planner's prediction
(:class:`.budget.CostModel` on the dry run's calibration), and a round is marked as fitting as the
runner decides (:func:`_fitting`: the calibration spent first, tuning and round 1 together, then
each round's own prediction with the planner's headroom against what is left), so the rounds
marked as fitting are those the budget would start if nothing resolved and every phase took its
prediction.

The minimum detectable effect at a look of n evaluation seeds is the half-width of the repeated
confidence interval there, ``critical(n) * sd / sqrt(n)`` (:meth:`SequentialDesign.critical`,
Bonferroni over the study's comparisons), under a *stated* assumption: the standard deviation of
paired differences across seeds is :data:`ASSUMED_SD` (1 point of accuracy; a pilot round
measures the real one, and the report gives the measured detectable effect).
"""

from __future__ import annotations

from typing import Any

from normlab.analysis.summary import cell_key, context
from normlab.data import Dataset

from .budget import HEADROOM, CostModel, with_headroom
from .dryrun import Estimate, describe_plan
from .plan import PlannedRun
from .protocol import duration_text
from .rounds import fitting_train_size, round1_stand_in
from .spec import StudySpec

ASSUMED_SD = 0.01
"""Assumed sd of paired differences (baseline - alternative) across seeds: 1 point."""


def comparisons(spec: StudySpec) -> int:
    """The study's comparisons: each level of the compared factor but the baseline, in each
    context (the family the design corrects over)."""
    baseline = spec.baseline
    contexts: dict[str, list[Any]] = {}
    for cell in spec.cells():
        contexts.setdefault(cell_key(context(cell, spec.compare)), []).append(
            cell.get(spec.compare)
        )
    return sum(
        len([level for level in levels if level != baseline])
        for levels in contexts.values()
        if baseline in levels
    )


def describe_adaptive_plan(
    spec: StudySpec,
    runs: list[PlannedRun],
    dataset: Dataset,
    estimate: Estimate | None,
    pack: str,
    workers: int,
) -> list[str]:
    """The dry-run report of an adaptive study (``runs``: its tuning runs)."""
    assert spec.adaptive is not None
    adaptive = spec.adaptive
    lines = describe_plan(spec, runs, dataset, estimate, pack)[:-1]  # its last line: "Dry run"
    family = comparisons(spec)
    design = adaptive.design(comparisons=max(1, family))
    budget = adaptive.budget_seconds
    tuning_seeds = ", ".join(map(str, adaptive.tuning_seed_values()))
    lines += [
        f"Protocol: adaptive. Tuning seeds {tuning_seeds} train every lr of each cell's grid "
        "(the runs above) and select its lr on validation accuracy; evaluation seeds 0, 1, ... "
        "train afresh at the selected lr, in rounds, and only they are compared.",
        f"Comparisons: {family} ({spec.compare} levels against {spec.baseline} in each context); "
        f"family-wise alpha {adaptive.alpha:g} over them and every look; resolved when "
        f"significant or equivalent within +-{adaptive.margin * 100:g} points.",
        f"Time budget: {adaptive.budget or 'none'}"
        + (
            ""
            if budget is not None
            else f" (rounds go on until every comparison resolves or {adaptive.max_seeds} seeds)"
        ),
    ]
    costs = (
        CostModel(estimate.unit_seconds, workers, pack, pack_sizes=estimate.pack_sizes)
        if estimate is not None
        else None
    )  # units cut at the study's measured pack sizes, as the runner cuts them
    template = [config for config in round1_stand_in(spec, runs) if config.seed == 0]
    cells = len(template)  # one config per cell: a run's cost does not depend on its lr
    rows = [("phase", "seeds", "runs", "est. time", "cumulative", "MDE (sd 1 point)", "")]
    total = 0.0
    fits_until = "tuning" if budget is None else None
    phases: list[tuple[str, int, list[Any]]] = [("tuning", 0, [run.config for run in runs])]
    previous = 0
    for round_index, look in enumerate(design.looks(), start=1):
        seeds = range(previous, look)
        configs = [config.replace(seed=seed) for config in template for seed in seeds]
        phases.append((f"round {round_index}", look, configs))
        previous = look
    predicted = [costs.predict(configs) if costs is not None else None for _, _, configs in phases]
    need_first = (
        predicted[0] + predicted[1]
        if len(predicted) > 1 and predicted[0] is not None and predicted[1] is not None
        else None
    )  # tuning and round 1
    fitting = _fitting(predicted, budget, estimate)
    for (name, look, configs), seconds, fits in zip(phases, predicted, fitting, strict=True):
        total += seconds or 0.0
        if fits == "fits":
            fits_until = name
        mde = f"{design.detectable(look, ASSUMED_SD) * 100:.2f} points" if look else "-"
        rows.append(
            (
                name,
                str(look) if look else ", ".join(map(str, adaptive.tuning_seed_values())),
                str(len(configs)),
                duration_text(seconds) if seconds is not None else "?",
                duration_text(total) if costs is not None else "?",
                mde,
                fits,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append(
        f"Rounds, worst case (every context open until {adaptive.max_seeds} seeds; "
        f"{cells} cells each round):"
    )
    lines += [
        "  " + "  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(
        f"MDE: the smallest paired difference a look resolves as significant, "
        f"critical(n) x sd / sqrt(n), assuming an sd of paired differences of "
        f"{ASSUMED_SD * 100:g} point across seeds (stated, not measured)."
    )
    if budget is not None:
        if need_first is None:  # rounds.check_budget cannot price them either: no refusal
            lines.append(
                f"Within {adaptive.budget}: tuning and round 1 cannot be priced without a "
                "calibration; the study starts, and each round is priced from the runs measured "
                "before it."
            )
        elif fits_until is None:
            lines.append(
                f"Within {adaptive.budget}: not even tuning and round 1 fit; the study would be "
                "refused before training (see the estimated times above)."
                + _smaller_training_set(spec, runs, dataset, estimate, need_first)
            )
        elif fits_until in ("tuning", "round 1"):
            lines.append(
                f"Within {adaptive.budget}: only through {fits_until}; tuning and round 1 must "
                "both fit or the study is refused before training."
            )
        elif fits_until == phases[-1][0]:
            lines.append(
                f"Within {adaptive.budget}: every round, even if no comparison resolves before "
                f"{adaptive.max_seeds} seeds."
            )
        else:
            lines.append(
                f"Within {adaptive.budget}: tuning and rounds through {fits_until} (if nothing "
                "resolves sooner); later rounds wait for a larger budget (the same command)."
            )
    lines.append("Dry run: nothing was trained or written.")
    return lines


def _fitting(
    predicted: list[float | None], budget: float | None, estimate: Estimate | None
) -> list[str]:
    """``fits`` / ``over`` per phase (tuning, round 1, ...), as the runner decides: the
    calibration is spent first; tuning and round 1 start only if both fit, with the headroom,
    in what is left (:func:`.rounds.check_budget`); each later round starts if its own
    prediction, with the headroom, fits in what the phases before it (taking their prediction)
    left (:meth:`.budget.Budget.allows`), and none after a round that does not. Empty where
    there is no budget or no prediction."""
    if budget is None:
        return ["" for _ in predicted]
    left = budget - (estimate.calibration_seconds if estimate is not None else 0.0)
    first = [seconds for seconds in predicted[:2] if seconds is not None]
    going = with_headroom(sum(first)) <= left
    marks = []
    for index, seconds in enumerate(predicted):
        if seconds is None:
            marks.append("")
            continue
        if index >= 2:
            going = going and with_headroom(seconds) <= left
        marks.append("fits" if going else "over")
        left -= seconds
    return marks


def _smaller_training_set(
    spec: StudySpec,
    runs: list[PlannedRun],
    dataset: Dataset,
    estimate: Estimate | None,
    need: float | None,
) -> str:
    """What fits the budget with fewer training examples (:func:`.rounds.fitting_train_size`),
    counting the calibration the study spends first; empty where that would not help."""
    assert spec.adaptive is not None and spec.adaptive.budget_seconds is not None
    if estimate is None or need is None:
        return ""
    left = spec.adaptive.budget_seconds - estimate.calibration_seconds
    num_train = len(dataset.y_train)
    fits = fitting_train_size(runs, need, left / (1.0 + HEADROOM), num_train, dataset.num_classes)
    if fits is None:
        return ""
    return (
        f" About {fits} training examples of the {num_train} would fit (--max-train {fits}; "
        "a spec: [run] dataset_options max_train_examples): an answer about that smaller "
        "training set, which a dry run with it checks."
    )


def dry_run_lines(
    spec: StudySpec,
    runs: list[PlannedRun],
    dataset: Dataset,
    estimate: Estimate | None,
    pack: str,
    workers: int,
) -> list[str]:
    """The dry run of either protocol (``--dry-run`` of ``run`` and ``study``)."""
    if spec.adaptive is None:
        return describe_plan(spec, runs, dataset, estimate, pack)
    return describe_adaptive_plan(spec, runs, dataset, estimate, pack, workers)
