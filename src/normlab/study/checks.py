"""Checks of study values and of level combinations that need no data.

:func:`value_problem` judges one run-config value (a name in its registry, a number in its
range). :func:`check_cells` judges the combinations a plan would train, after exclusions: a norm
that cannot be built with its options at some width (GroupNorm groups that do not divide the
channels, an option the norm does not take), a depth that does not fit the widths, batch size 1
with a norm that computes batch statistics, ``bn_momentum`` with a norm's own ``momentum`` option.
Errors name the file line of the value at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from normlab.data import DATASETS, SAMPLERS
from normlab.data.files import looks_like_path
from normlab.errors import NormlabError
from normlab.models import DROPOUT_POSITIONS, resnet
from normlab.norms import make_norm, norm_entry, uses_batch_statistics
from normlab.train import OPTIMIZERS, SCHEDULES, RunConfig, model_norm_options
from normlab.train.engine import INITS
from normlab.train.model_ref import check_model_ref

from .locate import dotted
from .spec import StudySpec

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "init": INITS,
    "dropout_position": DROPOUT_POSITIONS,
    "sampler": SAMPLERS,
}


def _finite(value: float) -> bool:
    return math.isfinite(value)


BOUNDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "batch_size": (lambda v: v >= 1, "must be >= 1"),
    "epochs": (lambda v: v >= 1, "must be >= 1"),
    "steps": (lambda v: v >= 1, "must be >= 1"),
    "depth": (lambda v: v >= 1, "must be >= 1"),
    "widths": (lambda v: len(v) > 0 and min(v) >= 1, "must list at least one positive width"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    "weight_decay": (lambda v: v >= 0.0 and _finite(v), "must be a finite number >= 0"),
    "momentum": (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)"),
    "bn_momentum": (lambda v: 0.0 < v <= 1.0, "must be in (0, 1]"),
    "classes_per_batch": (lambda v: v is None or v >= 1, "must be >= 1"),
}


def value_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for run-config field ``name`` (already type-checked), or None."""
    if name == "norm":
        try:
            norm_entry(value)
        except NormlabError as error:
            return str(error)
    if name == "dataset" and value not in DATASETS:
        if not looks_like_path(value):
            return f"{value!r} is neither a dataset name ({', '.join(DATASETS)}) nor a path"
        if not Path(value).exists():
            return f"{value}: no such file or folder"
    if name == "model":
        try:
            check_model_ref(value)
        except NormlabError as error:
            return str(error)
    if name in CHOICES and value not in CHOICES[name]:
        return f"{value!r} is not one of: {', '.join(CHOICES[name])}"
    if name in BOUNDS:
        valid, text = BOUNDS[name]
        if not valid(value):
            return f"{text}, got {value!r}"
    return None


def check_cells(spec: StudySpec) -> None:
    """Refuse a combination of levels that cannot train; each distinct model is built once."""
    architectures: set[tuple[int, tuple[int, ...]]] = set()
    norms: set[tuple[str, str, tuple[int, ...]]] = set()
    for cell in spec.cells():
        config = spec.cell_config(cell)
        if config.batch_size == 1 and uses_batch_statistics(config.norm):
            raise spec.origin.error(
                spec.value_path(cell, "batch_size"),
                f"batch size 1 with norm {config.norm!r}, which computes batch statistics, cannot "
                f'train; exclude the pair ([[exclude]] norm = "{config.norm}", batch_size = 1)',
            )
        try:
            model_norm_options(config)
        except NormlabError:
            where = dotted(spec.option_path(cell, config.norm, "momentum"))
            raise spec.origin.error(
                spec.value_path(cell, "bn_momentum"),
                f"momentum of {config.norm!r} also set at {where}; set it once",
            ) from None
        if config.model != "resnet":
            continue  # other models are built against the dataset (plan.check_study)
        if (config.depth, config.widths) not in architectures:
            architectures.add((config.depth, config.widths))
            _check_architecture(spec, cell, config)
        options = json.dumps(config.norm_options, sort_keys=True, default=repr)
        if (config.norm, options, config.widths) not in norms:
            norms.add((config.norm, options, config.widths))
            _check_norm(spec, cell, config)


def _check_architecture(spec: StudySpec, cell: dict[str, Any], config: RunConfig) -> None:
    try:
        resnet(norm="none", depth=config.depth, widths=config.widths, num_classes=2)
    except NormlabError as error:
        raise spec.origin.error(spec.value_path(cell, "depth"), str(error)) from None


def _check_norm(spec: StudySpec, cell: dict[str, Any], config: RunConfig) -> None:
    options = config.norm_options
    for width in sorted(set(config.widths)):
        problem = _norm_problem(config.norm, width, options)
        if problem is None:
            continue
        # Blame the first option that fails on its own, else the last one (a bad combination).
        alone = [k for k in options if _norm_problem(config.norm, width, {k: options[k]})]
        culprit = alone[0] if alone else (list(options)[-1] if options else None)
        path = (
            spec.option_path(cell, config.norm, culprit)
            if culprit is not None
            else spec.value_path(cell, "norm")
        )
        raise spec.origin.error(path, f"{problem} (norm {config.norm!r} at width {width})")


def _norm_problem(norm: str, width: int, options: dict[str, Any]) -> str | None:
    try:
        make_norm(norm, width, **options)
    except (NormlabError, TypeError, ValueError) as error:  # a bad option value is the user's
        return str(error)
    return None
