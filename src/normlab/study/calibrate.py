"""The pack size rule measured: each packable configuration of a plan timed alone and packed at
a few pack sizes (``packrule.py`` decides from the times; ``train/step_timing.py`` takes them),
and the sizes a study trains with (:func:`decide_pack_sizes`, recorded in its folder).

The timings are kept for the time estimate (``dryrun.py``), so a configuration measured for the
rule is not timed again to price its units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from normlab.data import Dataset
from normlab.train import RunConfig
from normlab.train.packed_func import PackRefused
from normlab.train.step_timing import EVAL_EXAMPLES, StepTiming, time_alone, time_packed

from .packrule import (
    PackChoice,
    candidate_sizes,
    choose_pack_size,
    fallback_choice,
    keep_doubling,
    record_choices,
    rule_key,
)
from .work import Execution, dataset_for, pack_groups

Timings = dict[tuple[Any, ...], StepTiming]
"""(calibration key, pack size) -> timing; size 1: alone."""


def calibration_key(config: RunConfig) -> tuple[Any, ...]:
    """What the estimate prices a unit by (a finer :func:`~.packrule.rule_key` is not needed:
    a study has one dataset)."""
    return (config.model, config.model_fingerprint, config.norm, config.batch_size, config.depth,
            config.widths)  # fmt: skip


def largest_groups(configs: Sequence[RunConfig], dataset: Dataset) -> dict[str, list[RunConfig]]:
    """Rule key -> the largest group of runs that could share a pack (two runs at least)."""
    largest: dict[str, list[RunConfig]] = {}
    for group in pack_groups(configs):
        if len(group) < 2:
            continue
        key = rule_key(group[0], tuple(dataset.input_shape))
        if len(group) > len(largest.get(key, ())):
            largest[key] = group
    return largest


def measure_choice(group: Sequence[RunConfig], dataset: Dataset, timings: Timings) -> PackChoice:
    """Time ``group``'s configuration alone, then packed at 2, 4, 8, ... runs while a size is
    faster than the best before it (:func:`~.packrule.keep_doubling`); the choice from the step
    times (:func:`~.packrule.choose_pack_size`). Every timing is added to ``timings``; a pack
    evaluates fewer examples per run as K grows (the same images evaluated in all), so that
    timing the evaluation costs about as much at every K."""
    key = calibration_key(group[0])
    height, width = dataset.input_shape[1:]
    alone = timings.get((*key, 1)) or time_alone(group[0], dataset)
    timings[(*key, 1)] = alone
    steps: dict[int, float] = {}
    for size in candidate_sizes(len(group), group[0].batch_size, height * width):
        if not keep_doubling({k: k * alone.step / s for k, s in steps.items()}):
            break
        try:
            timing = timings.get((*key, size)) or time_packed(
                list(group[:size]), dataset, eval_examples=max(16, EVAL_EXAMPLES // size)
            )
        except PackRefused as error:  # found at the pack's first forward: trains alone
            return PackChoice(1, "measured", reason=f"the packer refused it: {error}")
        timings[(*key, size)] = timing
        steps[size] = timing.step
    return choose_pack_size(alone.step, steps)


def measure_choices(
    configs: Sequence[RunConfig],
    dataset: Dataset,
    recorded: Mapping[str, PackChoice],
    timings: Timings,
) -> dict[str, PackChoice]:
    """The choice of every packable configuration of ``configs``: the recorded one where there
    is one (never measured again), else measured (:func:`measure_choice`)."""
    choices = {}
    for key, group in largest_groups(configs, dataset).items():
        choices[key] = recorded[key] if key in recorded else measure_choice(group, dataset, timings)
    return choices


def decide_pack_sizes(
    execution: Execution,
    configs: Sequence[RunConfig],
    recorded: Mapping[str, PackChoice],
    measured: Mapping[str, PackChoice],
    out_dir: Path,
) -> Execution:
    """``execution`` with the pack size of every packable configuration of ``configs``:
    recorded in ``out_dir`` by an earlier leg (kept: it decided numbers already), else
    ``measured`` by this leg's calibration, else the fixed rule (``packrule.fallback_choice``);
    what is decided now is added to the record. With ``--pack off`` nothing is decided."""
    if execution.pack != "auto" or not configs:
        return execution
    dataset = dataset_for(configs[0])
    height, width = dataset.input_shape[1:]
    choices = {
        key: recorded.get(key) or measured.get(key) or fallback_choice(group[0], height * width)
        for key, group in largest_groups(configs, dataset).items()
    }
    record_choices(out_dir, choices)
    return replace(execution, pack_sizes=tuple(sorted((k, c.size) for k, c in choices.items())))
