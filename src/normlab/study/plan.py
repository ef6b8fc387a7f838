"""Expand a study spec into its runs: factors x learning rates x seeds, minus exclusions.

Every run belongs to a *cell*: its factor levels without lr and seed. The tuned protocol selects
one lr per cell; seeds are the replicates within a cell.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from normlab.data import Dataset
from normlab.errors import NormlabError
from normlab.train import RunConfig, check_config, total_steps

from .spec import StudySpec


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study and the cell it belongs to."""

    config: RunConfig
    cell: dict[str, Any]

    @property
    def cell_key(self) -> str:
        return json.dumps(self.cell, sort_keys=True)


def _excluded(assignment: dict[str, Any], exclude: tuple[dict[str, Any], ...]) -> bool:
    return any(all(assignment.get(k) == v for k, v in rule.items()) for rule in exclude)


def expand(spec: StudySpec) -> list[PlannedRun]:
    """All runs of ``spec`` in a stable order (cells, then lr, then seed)."""
    names = list(spec.factors)
    runs = []
    for levels in itertools.product(*(spec.factors[name] for name in names)):
        cell = dict(zip(names, levels, strict=True))
        if _excluded(cell, spec.exclude):
            continue
        cell_base = spec.base.replace(**cell)
        for lr in spec.lr.learning_rates(cell_base.batch_size):
            for seed in spec.seeds:
                runs.append(PlannedRun(cell_base.replace(lr=lr, seed=seed), cell))
    if not runs:
        raise NormlabError(f"study {spec.name!r} plans no runs (every combination is excluded)")
    return runs


def check_plan(runs: list[PlannedRun], dataset: Dataset) -> None:
    """Refuse, before any training, a plan with a run that cannot train."""
    for run in runs:
        try:
            check_config(run.config, dataset)
        except NormlabError as error:
            raise NormlabError(f"run {_describe(run.cell)}: {error}") from None


def cost_order(runs: list[PlannedRun], num_examples: int) -> list[PlannedRun]:
    """Longest runs (most optimizer steps) first, so parallel workers finish together."""
    return sorted(runs, key=lambda run: -total_steps(run.config, num_examples))


def _describe(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell.items())
