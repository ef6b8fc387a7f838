"""The adaptive protocol's rounds: tune, evaluate, and add seeds only where the question is open.

1. **Tuning.** Every cell trains every lr of its grid with the tuning seeds (``1000 + i``; role
   ``tune``, round 0); the lr grid extension (:mod:`.extend`) applies to them. Each cell's lr is
   then selected on their validation accuracy (:func:`.extend.selected_lr`, the analysis's rule).
2. **Round 1.** Every cell trains evaluation seeds ``0 .. first_round - 1`` afresh at its selected
   lr (role ``eval``): test accuracies compared are never those that chose the lr.
3. **Later rounds.** While :func:`normlab.analysis.adaptive.open_contexts` names contexts whose
   comparisons are unresolved and may still add seeds, each such context's cells (every level of
   the compared factor, so the comparison stays paired by seed) train the seeds up to the next
   look of the design (``round_seeds`` more, at most ``max_seeds``).

Every batch goes through the runner's ``train`` (the executors' units: packing, workers, Ray), and
is registered in the store before it trains, with its role and round: an interrupted study
re-derives where it stands from the store (a round's unfinished runs are trained first, nothing
finished is trained again, not even a run another study of the store finished: it is linked). Before the tuning phase and each round the planner
(:mod:`.budget`) predicts its wall time, and the study never starts one that would overrun the
budget: a budget too small for tuning and round 1 is refused before anything trains, naming the
smallest budget that would do.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from normlab.analysis.adaptive import assess_study, open_contexts
from normlab.analysis.summary import context, full_cell
from normlab.data import Dataset
from normlab.errors import NormlabError
from normlab.train import RunConfig

from .budget import HEADROOM, Budget, CostModel, with_headroom
from .extend import extend_grids, selected_lr
from .plan import PlannedRun
from .protocol import duration_text
from .spec import StudySpec
from .store import FINISHED, Store

Train = Callable[..., None]
"""The runner's ``train(batch, phase=None)``: trains runs and records them in the store."""

STOPS = ("resolved", "max_seeds", "budget", "failed")
"""Why the rounds stopped: every comparison resolved, the open ones reached ``max_seeds``, the
next round would overrun the budget, or a run failed (retried by the next invocation)."""


@dataclass(frozen=True)
class RoundsOutcome:
    """What the adaptive protocol did in one invocation."""

    trained: int
    """Runs handed to ``train`` (tuning, extension and evaluation)."""
    rounds: int
    """The last evaluation round recorded (0: tuning not finished)."""
    stopped: str
    """One of :data:`STOPS`."""
    next_round_seconds: float | None = None
    """When stopped by the budget: the predicted wall time of the round it did not start."""


def _key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


def _by_cell(records: list[dict[str, Any]], role: str) -> dict[str, list[dict[str, Any]]]:
    cells: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["role"] == role:
            cells[_key(record["cell"])].append(record)
    return cells


def evaluation_runs(
    spec: StudySpec, tuning: list[dict[str, Any]], seeds: Sequence[int]
) -> list[PlannedRun]:
    """One cell's evaluation runs for ``seeds``, at the lr its tuning records select."""
    assert spec.adaptive is not None
    template = RunConfig.from_dict(tuning[0]["config"])
    lr = selected_lr(tuning)
    return [
        PlannedRun(
            template.replace(lr=lr, seed=seed),
            tuning[0]["cell"],
            "eval",
            spec.adaptive.round_of(seed),
        )
        for seed in seeds
    ]


def next_round(spec: StudySpec, records: list[dict[str, Any]]) -> list[PlannedRun]:
    """The evaluation runs of the next round (none when the rounds are over): round 1 for every
    cell while a cell lacks a first-round seed, else the next look's seeds for the cells of the
    open contexts. Assumes every tuning run is finished."""
    assert spec.adaptive is not None
    tuning = _by_cell(records, "tune")
    evaluated = _by_cell(records, "eval")
    first = range(spec.adaptive.first_round)
    seeds_of = {key: {r["config"]["seed"] for r in evaluated.get(key, [])} for key in tuning}
    missing = {key: [s for s in first if s not in seeds_of[key]] for key in tuning}
    if any(missing.values()):
        return [
            run for key, runs in tuning.items() for run in evaluation_runs(spec, runs, missing[key])
        ]
    design = spec.adaptive.design()
    added: list[PlannedRun] = []
    for open_context in open_contexts(records, design, str(spec.baseline), spec.compare):
        # The analysis's contexts are those of full cells (norm and batch size always there).
        members = [
            key
            for key, runs in tuning.items()
            if context(full_cell(runs[0]), spec.compare) == open_context
        ]
        if not members:
            continue
        have = min(len(seeds_of[key]) for key in members)
        target = design.next_look(have)
        if target is None:
            continue
        for key in members:  # a seed a cell already has is never planned again
            seeds = [seed for seed in range(have, target) if seed not in seeds_of[key]]
            added += evaluation_runs(spec, tuning[key], seeds)
    return added


def round1_stand_in(spec: StudySpec, planned: list[PlannedRun]) -> list[RunConfig]:
    """Configs that cost what round 1 will (its lr is not selected yet; a run's cost does not
    depend on its lr): each cell's first planned config with each first-round seed."""
    assert spec.adaptive is not None
    first: dict[str, RunConfig] = {}
    for run in planned:
        first.setdefault(run.cell_key, run.config)
    return [
        config.replace(seed=seed)
        for config in first.values()
        for seed in range(spec.adaptive.first_round)
    ]


COST_EXPONENT = 0.85
"""A study's cost goes as (training examples) ** COST_EXPONENT, not in proportion: a smaller
training set gets a smaller reference batch size (fewer examples per step, each step dearer per
example), and each run keeps its fixed costs (building the model, starting). Measured on the
2-core development machine: ResNet-20 on a CIFAR-format archive, batch size 4, predicted tuning
and round 1 fell 19.3x (9h16m to 28m49s) for a 28.1x smaller training set (8,999 to 320
examples), an exponent of 0.89; 0.85 errs on the side of fitting."""


def fitting_train_size(
    planned: list[PlannedRun], need: float, available: float, num_train: int, num_classes: int
) -> int | None:
    """The training examples with which work predicted at ``need`` seconds on ``num_train``
    would fit in ``available`` seconds, or None where fewer examples would not help (runs of a
    fixed number of steps, nothing to scale) or would leave fewer than 10 per class.

    A run's steps at a fixed number of epochs, and with ``--max-train`` its evaluations too, are
    proportional to its training examples, but its cost falls more slowly (:data:`COST_EXPONENT`),
    so the size is ``num_train x (available / need) ** (1 / COST_EXPONENT)``, shrunk by a further
    :data:`.budget.HEADROOM` and rounded down to two significant digits: an estimate, which
    ``--dry-run`` checks."""
    if num_train <= 0 or need <= 0 or available <= 0 or available >= need:
        return None
    if any(run.config.steps is not None for run in planned):
        return None
    size = num_train * (available / need) ** (1.0 / COST_EXPONENT) / (1.0 + HEADROOM)
    if size < 1:
        return None
    digits = 10 ** max(0, len(str(int(size))) - 2)
    size = int(size) // digits * digits
    return size if size >= 10 * max(1, num_classes) else None


def check_budget(
    spec: StudySpec,
    planned: list[PlannedRun],
    records: list[dict[str, Any]],
    costs: CostModel,
    budget: Budget,
    dataset: Dataset | None = None,
) -> None:
    """Refuse, before anything trains, a budget too small for the tuning runs still to train
    and evaluation round 1, naming the smallest budget that would do and, where the runs'
    length is in epochs of the ``dataset``'s training split, about how many examples would fit
    the budget given (:func:`fitting_train_size`)."""
    if budget.total is None or any(r["role"] == "eval" for r in records):
        return
    finished = {r["run_id"] for r in records if r["status"] in FINISHED}
    tuning = [run.config for run in planned if run.config.run_id not in finished]
    need_tuning = costs.predict(tuning)
    need_round = costs.predict(round1_stand_in(spec, planned))
    if need_tuning is None or need_round is None:
        return  # nothing to predict from (no calibration, nothing measured): rounds decide
    if budget.allows(need_tuning + need_round):
        return
    smallest = budget.spent() + with_headroom(need_tuning + need_round)
    left = budget.left() or 0.0
    fits, num_train = None, len(dataset.y_train) if dataset is not None else 0
    if dataset is not None and not finished:  # a study begun keeps its training set
        available = left / (1.0 + HEADROOM)
        fits = fitting_train_size(
            planned, need_tuning + need_round, available, num_train, dataset.num_classes
        )
    smaller = (
        f"; within {duration_text(budget.total)}, about {fits} training examples of the "
        f"{num_train} would fit (--max-train {fits}; a spec: [run] dataset_options "
        "max_train_examples), an answer about that smaller training set: --dry-run checks it"
        if fits is not None
        else ""
    )
    raise NormlabError(
        f"budget {duration_text(budget.total)} is too small: the learning-rate search ({len(tuning)} "
        f"tuning runs, about {duration_text(need_tuning)}) and evaluation round 1 "
        f"({len(round1_stand_in(spec, planned))} runs, about {duration_text(need_round)}) do not "
        f"fit in what is left ({duration_text(budget.spent())} spent by earlier runs and the "
        f"calibration); the smallest budget that would do is {duration_text(smallest)} (or ask "
        f"about fewer batch sizes, norms or lr grid points){smaller}"
    )


def run_adaptive(
    spec: StudySpec,
    store: Store,
    study_id: str,
    planned: list[PlannedRun],
    todo: list[PlannedRun],
    train: Train,
    costs: CostModel,
    budget: Budget,
) -> RoundsOutcome:
    """Tuning, its lr grid extension, then evaluation rounds (module docstring); ``planned``:
    the tuning runs (``plan.expand``), ``todo``: those not finished."""
    trained = 0
    stop: dict[str, float | None] = {}

    def within_budget(batch: list[PlannedRun], phase: str, register: str | None = None) -> None:
        """Train ``batch`` if its prediction fits the budget (registering it in the store under
        ``register`` first: a round is recorded only once it starts)."""
        nonlocal trained
        if not batch:
            return
        configs = [run.config for run in batch]
        predicted = costs.predict(configs)
        if "budget" in stop or not budget.allows(predicted):
            stop.setdefault("budget", predicted)
            return
        if register is not None:
            store.add_runs(register, batch)
        started = budget.now()
        train(batch, phase)
        costs.observe(configs, budget.now() - started)
        trained += len(batch)

    within_budget(todo, "tuning")  # check_budget: the runner's, before the leg begins
    extend_grids(
        spec, store, planned, lambda batch: within_budget(batch, "extending lr grids"), study_id
    )
    tried: set[str] = set()
    while "budget" not in stop:
        records = store.records(study_id)
        costs.learn(records)
        unfinished = [r for r in records if r["status"] not in FINISHED]
        if any(r["role"] == "tune" for r in unfinished):
            return RoundsOutcome(trained, 0, "failed")  # a tuning run failed: lr not final
        pending = [
            PlannedRun(RunConfig.from_dict(r["config"]), r["cell"], r["role"], r["round"])
            for r in unfinished
            if r["run_id"] not in tried
        ]
        if any(r["run_id"] in tried for r in unfinished):
            return RoundsOutcome(trained, _last_round(records), "failed")
        batch = pending or next_round(spec, records)
        if not batch:
            return RoundsOutcome(trained, _last_round(records), _why_over(spec, records))
        statuses = store.statuses()
        shared = [run for run in batch if statuses.get(run.config.run_id) in FINISHED]
        if shared:  # finished by another study of the store: linked, not trained again
            store.add_runs(study_id, shared)
            continue
        tried.update(run.config.run_id for run in batch)
        within_budget(batch, f"evaluation round {max(run.round for run in batch)}", study_id)
    records = store.records(study_id)
    return RoundsOutcome(trained, _last_round(records), "budget", stop.get("budget"))


def _last_round(records: list[dict[str, Any]]) -> int:
    return max(
        (r["round"] for r in records if r["role"] == "eval" and r["status"] in FINISHED), default=0
    )


def _why_over(spec: StudySpec, records: list[dict[str, Any]]) -> str:
    """``resolved`` when no comparison is open, else ``max_seeds`` (open ones can add none)."""
    assert spec.adaptive is not None
    assessed = assess_study(records, spec.adaptive.design(), str(spec.baseline), spec.compare)
    return "resolved" if all(a.assessment.resolved for a in assessed) else "max_seeds"


def outcome_text(outcome: RoundsOutcome) -> str:
    """One line for the terminal: how far the rounds went and why they stopped."""
    reached = f"evaluation round {outcome.rounds}" if outcome.rounds else "tuning"
    why = {
        "resolved": "every comparison is resolved",
        "max_seeds": "the open comparisons reached max_seeds",
        "failed": "a run failed (the same command retries it and goes on)",
        "budget": "the next round would overrun the budget",
    }[outcome.stopped]
    text = f"Adaptive protocol: stopped after {reached}: {why}"
    if outcome.stopped == "budget" and outcome.next_round_seconds is not None:
        text += (
            f" (it was estimated at {duration_text(outcome.next_round_seconds)}; the same command "
            "with a larger --budget continues)"
        )
    return text + "."
