"""No verdict rests on an untuned learning rate: extend a cell's lr grid past the edge it selects.

Under the tuned protocol a cell whose selected lr is the smallest (or largest) value it tried may
do better beyond the grid. After the planned runs finish, :func:`extend_grids` adds, for each
such cell, the next value beyond that edge (the same ratio as the grid's two outermost values),
trains it with every seed, selects again, and repeats until every selected lr is interior or a
cell has ``[lr] extend`` values beyond its planned grid on that side. The added runs live in the
store like planned ones (linked to the study), so an interrupted extension resumes with the same
command, and the report reads every lr a cell tried.

The selection rule is the analysis's (:func:`normlab.analysis.summary.summarize`): best mean
validation accuracy over seeds, a diverged run counting as 0, ties to the smaller lr.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from normlab.train import RunConfig

from .plan import PlannedRun
from .spec import StudySpec, _round
from .store import FINISHED, Store


def selected_lr(records: list[dict[str, Any]]) -> float:
    """The lr a cell's finished runs select (see the module docstring)."""
    by_lr: dict[float, list[float]] = defaultdict(list)
    for record in records:
        by_lr[record["config"]["lr"]].append(
            record["val_acc"] if record["status"] == "done" else 0.0
        )
    means = {lr: statistics.fmean(values) for lr, values in by_lr.items()}
    return max(sorted(means), key=lambda lr: (means[lr], -lr))


def next_runs(
    spec: StudySpec, planned: list[PlannedRun], records: list[dict[str, Any]]
) -> list[PlannedRun]:
    """The runs one round of extension adds (none once every cell is interior or at its limit)."""
    if spec.lr.mode != "tuned" or spec.lr.extend == 0:
        return []
    planned_grid: dict[str, set[float]] = defaultdict(set)
    for run in planned:
        planned_grid[run.cell_key].add(run.config.lr)
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    # Only the seeds that train the whole grid select (the adaptive protocol's evaluation
    # seeds, trained at the selected lr, never do).
    for record in (r for r in records if r["config"]["seed"] in spec.seeds):
        by_cell[json.dumps(record["cell"], sort_keys=True)].append(record)
    added = []
    role = "tune" if spec.adaptive is not None else ""
    for key, runs in by_cell.items():
        grid = tuple(sorted({r["config"]["lr"] for r in runs}))
        if key not in planned_grid or len(grid) < 2:
            continue
        if any(r["status"] not in FINISHED for r in runs):
            continue  # selection is not final yet (or a run failed: retried first)
        chosen = selected_lr(runs)
        original = sorted(planned_grid[key])
        for upward, edge in ((False, grid[0]), (True, grid[-1])):
            beyond = [lr for lr in grid if (lr > original[-1] if upward else lr < original[0])]
            if chosen != edge or len(beyond) >= spec.lr.extend:
                continue
            step = spec.lr.step(grid, upward)
            lr = _round(edge * step if upward else edge / step)
            template = RunConfig.from_dict(runs[0]["config"])
            added += [
                PlannedRun(template.replace(lr=lr, seed=seed), runs[0]["cell"], role)
                for seed in spec.seeds
            ]
    return added


def extend_grids(
    spec: StudySpec,
    store: Store,
    planned: list[PlannedRun],
    train: Callable[[list[PlannedRun]], None],
    study_id: str | None = None,
) -> int:
    """Rounds of extension until no cell needs one; returns the runs added or retried.

    ``train`` trains runs and records them in ``store`` (the runner's loop). Extension runs left
    unfinished by an earlier call are trained first; each run is tried at most once per call, so a
    run that fails does not loop. ``study_id``: the study's id in the store (default
    ``spec.study_id``; the runner's when the study was started alongside another on changed files).
    """
    study_id = study_id or spec.study_id
    planned_ids = {run.config.run_id for run in planned}
    tried: set[str] = set()
    while True:
        records = store.records(study_id)
        unfinished = [
            PlannedRun(RunConfig.from_dict(r["config"]), r["cell"], r["role"], r["round"])
            for r in records
            if r["run_id"] not in planned_ids
            and r["status"] not in FINISHED
            and r["config"]["seed"] in spec.seeds  # evaluation rounds are study/rounds.py's
        ]
        new = [run for run in next_runs(spec, planned, records) if run.config.run_id not in tried]
        todo = [run for run in [*unfinished, *new] if run.config.run_id not in tried]
        if not todo:
            return len(tried)
        store.add_runs(study_id, new)
        tried.update(run.config.run_id for run in todo)
        statuses = store.statuses()  # a run shared with another study may be finished already
        train([run for run in todo if statuses[run.config.run_id] not in FINISHED])
