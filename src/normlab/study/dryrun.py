"""What a study would do, without doing it: its cells, each cell's lr grid and an estimated time.

The estimate is a short calibration, not a model of the hardware: for each (norm, batch size,
architecture) of the plan, a representative run trains a few optimizer steps (after two warm-up
steps) with the torch threads a worker would get, and evaluates once on the validation split.
Each run then costs ``steps x seconds_per_step`` plus its evaluations (validation every epoch
and once more at the end for the divergence check, test twice), and runs are packed onto the
workers longest first, as the executor orders them. Parallel workers share memory bandwidth, so
the wall-clock estimate is optimistic when workers > 1. Nothing is written to disk.

With ``pack="auto"`` the pack size of each packable configuration is decided first (the
measured rule, ``packrule.py``: timed alone and packed at a few sizes by ``calibrate.py``, or a
choice the study folder recorded), the plan is cut into the executors' units at those sizes
(``work.work_units``), and every pack is priced as a pack: a packed model of the size timed
nearest to its runs trains a few steps and evaluates part of the validation split once, all K
runs at a time, and a pack of another size is charged in proportion to its runs. A pack costs ``steps x seconds_per_packed_step`` plus its
evaluations, and each of its runs is credited an equal share.

The same timings price units the plan did not hold (:meth:`Estimate.unit_seconds`: the runs the
lr grid extension adds), and ``normlab run`` calibrates before it trains: its progress display
scales the calibrated cost of the remaining work by the measured pace (``study/progress.py``),
and the store keeps the estimate for the report (estimated beside measured wall time).
"""

from __future__ import annotations

import heapq
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from normlab.data import Dataset, batches_per_epoch
from normlab.train import RunConfig, total_steps
from normlab.train.packed import can_pack
from normlab.train.packed_func import PackRefused
from normlab.train.step_timing import StepTiming, time_alone, time_packed

from .calibrate import Timings, calibration_key, measure_choices
from .packrule import PackChoice, describe_key, fallback_choice, rule_key
from .plan import PlannedRun
from .spec import LrProtocol, StudySpec
from .work import image_shape, pack_groups, threads_per_worker, work_units


@dataclass(frozen=True)
class Estimate:
    """Estimated training time of a plan."""

    run_seconds: dict[str, float]
    """Run id -> estimated seconds (training steps and evaluations) on one worker."""
    wall_seconds: float
    """Estimated wall-clock time with ``workers`` workers (longest runs first)."""
    workers: int
    calibrated: int
    """Configurations timed."""
    calibration_seconds: float
    units: int = 0
    """Units of work (packs and runs alone) the executors would hand out."""
    timings: Timings = field(default_factory=dict, repr=False)
    """(calibration key, pack size) -> the calibrated timing (``calibrate.calibration_key``)."""
    split_sizes: tuple[int, int, int] = (0, 0, 0)
    """Train, validation and test examples of the dataset calibrated on."""
    pack_choices: dict[str, PackChoice] = field(default_factory=dict)
    """Rule key -> pack size of every packable configuration (``packrule.py``): measured by
    this calibration, or recorded before and reused."""

    @property
    def pack_sizes(self) -> dict[str, int]:
        """Rule key -> runs per pack, as ``work.work_units`` takes them."""
        return {key: choice.size for key, choice in self.pack_choices.items()}

    @property
    def total_seconds(self) -> float:
        return sum(self.run_seconds.values())

    def unit_seconds(self, unit: list[RunConfig]) -> float | None:
        """Estimated seconds of one unit of work (a pack or a run alone) on one worker, from
        the timing of its (norm, batch size, architecture) at the nearest pack size, charged
        in proportion to the runs; None when that configuration was not calibrated."""
        return _unit_seconds(unit, self.timings, self.split_sizes)


def _unit_seconds(
    unit: list[RunConfig],
    timings: Timings,
    split_sizes: tuple[int, int, int],
) -> float | None:
    """:meth:`Estimate.unit_seconds`: setup, every step and the evaluations (validation every
    epoch and once more for the divergence check, test twice) at the nearest calibrated size."""
    key = calibration_key(unit[0])
    sizes = [size for *base, size in timings if tuple(base) == key]
    if not sizes:
        return None
    nearest = min(sizes, key=lambda size: (abs(size - len(unit)), -size))
    timing = timings[(*key, nearest)].scaled(len(unit) / nearest)
    num_train, num_val, num_test = split_sizes
    steps = total_steps(unit[0], num_train)
    epochs = math.ceil(steps / batches_per_epoch(num_train, unit[0].batch_size))
    evaluated = (epochs + 1) * num_val + 2 * num_test
    return timing.setup + steps * timing.step + evaluated * timing.example


def estimate_time(
    runs: list[PlannedRun],
    dataset: Dataset,
    workers: int,
    threads: int | None = None,
    pack: str = "off",
    recorded: dict[str, PackChoice] | None = None,
) -> Estimate:
    """Calibrate on ``dataset`` and extrapolate to every unit of work of the plan (``pack``:
    as ``--pack``) and ``workers`` workers of ``threads`` torch threads each (default: the
    cores shared out among the workers).

    With ``pack="auto"`` the pack size of every packable configuration is decided first: the
    ``recorded`` choice (a study folder's, ``packrule.load_choices``) where there is one, else
    measured (``calibrate.measure_choices``); the units are then cut at those sizes."""
    started = time.perf_counter()
    configs = [run.config for run in runs]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or threads_per_worker(workers))
    timings: Timings = {}
    choices: dict[str, PackChoice] = {}
    try:
        if pack == "auto":
            choices = measure_choices(configs, dataset, recorded or {}, timings)
        units = work_units(configs, pack, {k: c.size for k, c in choices.items()})
        # Each (configuration, unit size) not timed for the rule: at its largest unit planned.
        largest: dict[tuple[Any, ...], list[RunConfig]] = {}
        for unit in units:
            key = calibration_key(unit[0])
            if len(unit) > len(largest.get(key, ())):
                largest[key] = unit
        for key, unit in largest.items():
            if (*key, len(unit)) not in timings:
                timings[(*key, len(unit))] = _time_unit(unit, dataset)
    finally:
        torch.set_num_threads(previous_threads)
    split_sizes = (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test))
    run_seconds, unit_seconds = {}, []
    for unit in units:
        seconds = _unit_seconds(unit, timings, split_sizes) or 0.0  # every key was calibrated
        unit_seconds.append(seconds)
        run_seconds.update((config.run_id, seconds / len(unit)) for config in unit)
    return Estimate(
        run_seconds=run_seconds,
        wall_seconds=_makespan(sorted(unit_seconds, reverse=True), workers),
        workers=workers,
        calibrated=len({key[:-1] for key in timings}),
        calibration_seconds=time.perf_counter() - started,
        units=len(units),
        timings=timings,
        split_sizes=split_sizes,
        pack_choices=choices,
    )


def _time_unit(unit: list[RunConfig], dataset: Dataset) -> StepTiming:
    if len(unit) == 1:
        return time_alone(unit[0], dataset)
    try:
        return time_packed(unit, dataset)
    except PackRefused:  # its runs will train alone, one after the other (train_runs)
        return time_alone(unit[0], dataset).scaled(len(unit))


def packing_lines(
    runs: list[PlannedRun], pack: str, choices: dict[str, PackChoice] | None = None
) -> list[str]:
    """Which runs train in packs (``--pack``), in how many, and for each configuration its pack
    size and measured factor (``choices``, else the fixed rule), or why it trains alone."""
    if pack == "off":
        return ["Packing: off (--pack off): every run trains alone"]
    choices = choices or {}
    configs = [run.config for run in runs]
    units = work_units(configs, pack, {k: c.size for k, c in choices.items()})
    packs = [unit for unit in units if len(unit) > 1]
    packed_runs = sum(len(unit) for unit in packs)
    sizes = sorted({len(unit) for unit in packs}, reverse=True)
    lines = [
        f"Packing: {packed_runs} of {len(runs)} runs train in {len(packs)} packs "
        f"(sizes {', '.join(map(str, sizes)) or '-'}); {len(units) - len(packs)} train alone"
    ]
    # One line per configuration: where its runs go and why.
    described: dict[str, tuple[str, int]] = {}
    for group in pack_groups(configs):
        config = group[0]
        packable, problem = can_pack(config)
        if not packable:
            line = f"alone: {describe_key(config)}: {problem}"
        elif len(group) == 1:
            line = f"alone: {describe_key(config)}: the only run of its pack key"
        else:
            shape = image_shape(config)
            key = rule_key(config, shape)
            choice = choices.get(key) or fallback_choice(config, shape[-1] * shape[-2])
            verdict = "packed" if choice.size > 1 else "alone"
            line = f"{verdict}: {describe_key(config)}: {choice.describe()}"
        text, count = described.get(line, (line, 0))
        described[line] = (text, count + len(group))
    lines += [
        f"  {text} [{count} run{'s' if count != 1 else ''}]" for text, count in described.values()
    ]
    return lines


def _makespan(durations: list[float], workers: int) -> float:
    """Finish time of ``durations`` handed, in order, to whichever of ``workers`` is free first."""
    loads = [0.0] * max(1, min(workers, len(durations)))
    for duration in durations:
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


def describe_plan(
    spec: StudySpec,
    runs: list[PlannedRun],
    dataset: Dataset,
    estimate: Estimate | None = None,
    pack: str = "off",
) -> list[str]:
    """The dry-run report: factors, budget, lr protocol, one line per cell, the estimate."""
    num_train = len(dataset.y_train)
    cells: dict[str, list[PlannedRun]] = {}
    for run in runs:
        cells.setdefault(run.cell_key, []).append(run)
    lines = [
        f"Study: {spec.name} (id {spec.study_id})",
        f"Dataset: {dataset.describe()}",
        "Factors:" if spec.factors else "Factors: none (one cell)",
    ]
    width = max((len(name) for name in spec.factors), default=0)
    lines += [f"  {name:<{width}}  {_levels(levels)}" for name, levels in spec.factors.items()]
    lines += [
        f"Seeds: {_levels(spec.seeds)}",
        f"Budget: {_budget_text(spec)}",
        f"Learning rate: {_lr_text(spec.lr)}",
    ]
    if spec.exclude:
        rules = "; ".join(", ".join(f"{k}={v}" for k, v in rule.items()) for rule in spec.exclude)
        lines.append(f"Excluded: {rules}")
    steps = sum(total_steps(run.config, num_train) for run in runs)
    lines.append(
        f"Plan: {len(cells)} cells, {len(runs)} runs, {steps:,} optimizer steps "
        f"(cells x lr grid x {len(spec.seeds)} seeds)"
    )
    rows = [("cell", "lr grid", "runs", "steps/run")]
    for members in cells.values():
        first = members[0]
        grid = sorted({run.config.lr for run in members})
        rows.append(
            (
                _cell_text(first.cell),
                ", ".join(f"{lr:g}" for lr in grid),
                str(len(members)),
                f"{total_steps(first.config, num_train):,}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines += [
        "  " + "  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += packing_lines(runs, pack, estimate.pack_choices if estimate else None)
    if estimate is not None:
        lines.append(
            f"Estimated time: {_duration(estimate.wall_seconds)} with {estimate.workers} worker(s) "
            f"({_duration(estimate.total_seconds)} on one; calibrated {estimate.calibrated} "
            f"configuration(s) in {estimate.calibration_seconds:.1f} s)"
        )
    lines.append("Dry run: nothing was trained or written.")
    return lines


def _budget_text(spec: StudySpec) -> str:
    if spec.base.steps is not None:
        return f"{spec.base.steps} optimizer steps per run (equal steps)"
    if "steps" in spec.factors:
        return "optimizer steps per run from factors.steps (equal steps)"
    if "epochs" in spec.factors:
        return "epochs per run from factors.epochs (equal examples across batch sizes)"
    epochs = spec.base.epochs
    return f"{epochs} epoch{'s' if epochs != 1 else ''} per run (equal examples across batch sizes)"


def _lr_text(lr: LrProtocol) -> str:
    if lr.mode == "fixed":
        return f"fixed at {lr.base_lr:g}"
    if lr.mode == "scaled":
        return f"scaled ({lr.rule}) from {lr.base_lr:g} at batch size {lr.base_batch_size}"
    grid = (
        f"grid {_levels(lr.grid)}"
        if lr.grid
        else f"{lr.points} values {lr.spacing:g}x apart around {lr.center:g}"
    )
    return (
        f"tuned per cell on validation accuracy: {grid} at batch size {lr.base_batch_size}, "
        f"moved with {lr.grid_scaling} scaling of the batch size"
    )


def _levels(levels: tuple[Any, ...]) -> str:
    return ", ".join(json.dumps(v) if isinstance(v, (list, tuple)) else str(v) for v in levels)


def _cell_text(cell: dict[str, Any]) -> str:
    return " ".join(f"{k}={_levels((v,))}" for k, v in cell.items()) or "(all runs)"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
