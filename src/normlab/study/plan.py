"""Expand a study spec into its runs: cells (factors minus exclusions) x learning rates x seeds.

Every run belongs to a *cell*: its factor levels without lr and seed. The tuned protocol selects
one lr per cell; seeds are the replicates within a cell.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from normlab.data import Dataset
from normlab.errors import NormlabError
from normlab.train import RunConfig, build_model, check_config, total_steps
from normlab.train.model_fit import check_model_fits

from .spec import StudySpec
from .work import dataset_for


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study and the cell it belongs to."""

    config: RunConfig
    cell: dict[str, Any]
    role: str = ""
    """The adaptive protocol's role: ``tune`` (a tuning seed: selects the lr), ``eval`` (an
    evaluation seed at the selected lr); '' under the fixed protocol."""
    round: int = 0
    """The adaptive protocol's evaluation round (1, 2, ...); 0 for tuning and fixed runs."""

    @property
    def cell_key(self) -> str:
        return json.dumps(self.cell, sort_keys=True)


def expand(spec: StudySpec) -> list[PlannedRun]:
    """All runs of ``spec`` in a stable order (cells, then lr, then seed). Under the adaptive
    protocol these are its tuning runs (``spec.seeds`` are then the tuning seeds); the
    evaluation rounds are planned as the study runs (``study/rounds.py``)."""
    runs = []
    role = "tune" if spec.adaptive is not None else ""
    for cell in spec.cells():
        config = spec.cell_config(cell)
        for lr in spec.lr.learning_rates(config.batch_size):
            for seed in spec.seeds:
                runs.append(PlannedRun(config.replace(lr=lr, seed=seed), cell, role))
    if not runs:
        raise NormlabError(f"study {spec.name!r} plans no runs (every combination is excluded)")
    return runs


def check_study(
    spec: StudySpec, *, data_option: str = "[run] dataset"
) -> tuple[list[PlannedRun], Dataset]:
    """Plan ``spec`` and check it against its dataset, before any training.

    The dataset's options must build it, every batch size must fit its training split, and
    every model must take the data's inputs and give one score per class (a probe forward
    pass); errors name the spec line of the value at fault, and ``data_option`` where the data
    is chosen (``--data`` for ``normlab run``). Returns the runs and the dataset (loaded once
    per process, so the runner reuses it).
    """
    runs = expand(spec)
    try:
        dataset = dataset_for(runs[0].config)
    except NormlabError as error:
        key = "dataset_options" if spec.base.dataset_options else "dataset"
        raise spec.origin.error(("run", key), str(error)) from None
    num_train = len(dataset.y_train)
    for run in runs:
        if run.config.batch_size > num_train:
            raise spec.origin.error(
                spec.value_path(run.cell, "batch_size"),
                f"batch size {run.config.batch_size} is larger than the training split of "
                f"{dataset.describe()}",
            )
    check_plan(runs, dataset)
    _check_models(spec, runs, dataset, data_option)
    return runs, dataset


def _check_models(
    spec: StudySpec, runs: list[PlannedRun], dataset: Dataset, data_option: str
) -> None:
    """Build each distinct (model, norm, options) other than the seed ResNet once against the
    dataset's shape and probe it with one batch: a factory that fails, a norm it cannot take,
    or a model that does not fit the data is refused before training."""
    built: set[str] = set()
    fitted: set[str] = set()
    for run in runs:
        config = run.config
        key = json.dumps([config.model, config.norm, config.norm_options], default=repr)
        if config.model == "resnet" or key in built:
            continue
        built.add(key)
        where = spec.value_path(run.cell, "model")
        try:
            model = build_model(config, dataset)
        except NormlabError as error:
            raise spec.origin.error(where, f"norm {config.norm!r}: {error}") from None
        try:
            check_model_fits(model, dataset, config.model, data_option=data_option)
        except NormlabError as error:
            # The factory's first model failing is the model's fault, whatever the norm.
            prefix = f"norm {config.norm!r}: " if config.model in fitted else ""
            raise spec.origin.error(where, f"{prefix}{error}") from None
        fitted.add(config.model)


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
