"""What a study would do, without doing it: its cells, each cell's lr grid and an estimated time.

The estimate is a short calibration, not a model of the hardware: for each (norm, batch size,
architecture) of the plan, a representative run trains a few optimizer steps (after two warm-up
steps) with the torch threads a worker would get, and evaluates once on the validation split.
Each run then costs ``steps x seconds_per_step`` plus its evaluations (validation every epoch
and once more at the end for the divergence check, test twice), and runs are packed onto the
workers longest first, as the executor orders them. Parallel workers share memory bandwidth, so
the wall-clock estimate is optimistic when workers > 1. Nothing is written to disk.

With ``pack="auto"`` the plan is cut into the executors' units (``work.work_units``) and every
pack is calibrated as a pack: a packed model of the largest size the plan holds for its (norm,
batch size, architecture) trains a few steps and evaluates part of the validation split once,
all K runs at a time; a pack of another size is charged in proportion to its runs (packs of one
cell differ by at most one run). A pack costs ``steps x seconds_per_packed_step`` plus its
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
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from normlab.data import Dataset, batches_per_epoch, epoch_order
from normlab.train import RunConfig, accuracy, build_model, build_optimizer, total_steps
from normlab.train.evaluate import chunks
from normlab.train.packed import build_packed, can_pack
from normlab.train.packed_data import RunStreams, packed_batches
from normlab.train.packed_eval import correct_counts
from normlab.train.packed_func import PackRefused
from normlab.train.packed_optim import PackedOptimizer

from .plan import PlannedRun
from .spec import LrProtocol, StudySpec
from .work import (
    PACKED_STEP_PIXELS,
    dataset_for,
    pack_size_limit,
    threads_per_worker,
    work_units,
)

WARMUP_STEPS = 2
"""Untimed first steps (allocator and autograd warm-up make them several times slower)."""
CALIBRATION_STEPS = 5
"""Timed optimizer steps per calibrated configuration; their median is the step time."""
CALIBRATION_SECONDS = 1.0
"""Stop timing a configuration after this long (once one step past warm-up is timed)."""
CALIBRATION_EVAL_EXAMPLES = 128
"""Validation examples timed per configuration: evaluation cost is linear in the examples, and
the whole split took most of a pack's calibration (3.6 s of 5 for K = 25 at batch 2, loaded)."""


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
    timings: dict[tuple[Any, ...], _Timing] = field(default_factory=dict, repr=False)
    """(norm, batch size, depth, widths, pack size) -> the calibrated timing."""
    split_sizes: tuple[int, int, int] = (0, 0, 0)
    """Train, validation and test examples of the dataset calibrated on."""

    @property
    def total_seconds(self) -> float:
        return sum(self.run_seconds.values())

    def unit_seconds(self, unit: list[RunConfig]) -> float | None:
        """Estimated seconds of one unit of work (a pack or a run alone) on one worker, from
        the timing of its (norm, batch size, architecture) at the nearest pack size, charged
        in proportion to the runs; None when that configuration was not calibrated."""
        return _unit_seconds(unit, self.timings, self.split_sizes)


def _calibration_key(config: RunConfig) -> tuple[Any, ...]:
    return (config.norm, config.batch_size, config.depth, config.widths)


@dataclass(frozen=True)
class _Timing:
    setup: float
    """Seconds to build the model and optimizer."""
    step: float
    """Seconds per optimizer step (median)."""
    example: float
    """Seconds per evaluated example."""

    def scaled(self, factor: float) -> _Timing:
        return _Timing(self.setup * factor, self.step * factor, self.example * factor)


def _unit_seconds(
    unit: list[RunConfig],
    timings: dict[tuple[Any, ...], _Timing],
    split_sizes: tuple[int, int, int],
) -> float | None:
    """:meth:`Estimate.unit_seconds`: setup, every step and the evaluations (validation every
    epoch and once more for the divergence check, test twice) at the nearest calibrated size."""
    key = _calibration_key(unit[0])
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


def _time_steps(config: RunConfig, dataset: Dataset) -> _Timing:
    """Time building, a few optimizer steps and one validation pass of ``config``."""
    torch.manual_seed(config.seed)
    # The first build of a process pays one-off lazy initialization, and so does its first torch
    # optimizer (4.5 s of a 5.7 s calibration on a loaded machine: imports torch._dynamo).
    build_optimizer(build_model(config, dataset), config)
    started = time.perf_counter()
    model = build_model(config, dataset)
    optimizer = build_optimizer(model, config)
    setup = time.perf_counter() - started
    order = epoch_order(config.seed, 0, len(dataset.y_train), config.batch_size)
    model.train()
    durations = []
    for step in range(WARMUP_STEPS + CALIBRATION_STEPS):
        batch = order[step % len(order)]
        started = time.perf_counter()
        loss = F.cross_entropy(model(dataset.x_train[batch]), dataset.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        durations.append(time.perf_counter() - started)
        if step >= WARMUP_STEPS and sum(durations) > CALIBRATION_SECONDS:
            break  # slow steps are measured well enough by few of them
    count = min(len(dataset.y_val), CALIBRATION_EVAL_EXAMPLES)
    started = time.perf_counter()
    accuracy(model, dataset.x_val[:count], dataset.y_val[:count])
    per_example = (time.perf_counter() - started) / max(1, count)
    return _Timing(setup, statistics.median(durations[WARMUP_STEPS:]), per_example)


def _time_packed_steps(configs: list[RunConfig], dataset: Dataset) -> _Timing:
    """:func:`_time_steps` for a pack of ``configs``: seconds per packed step (all K runs) and
    per validation example evaluated by all K runs at once."""
    started = time.perf_counter()
    try:
        packed, _ = build_packed(configs, dataset)
    except PackRefused:  # its runs will train alone, one after the other
        return _time_steps(configs[0], dataset).scaled(len(configs))
    parameters = list(packed.parameters())
    optimizer = PackedOptimizer(parameters, [p.ndim > 1 for p in parameters], configs, 1000)
    setup = time.perf_counter() - started
    count, batch_size = len(configs), configs[0].batch_size
    streams = RunStreams(configs, dataset.y_train)
    index = streams.take(WARMUP_STEPS + CALIBRATION_STEPS)
    xs, ys = packed_batches(dataset.x_train, dataset.y_train, index, configs, 0)
    packed.train()
    durations = []
    for step, (x, y) in enumerate(zip(xs, ys, strict=True)):
        started = time.perf_counter()
        logits = packed(x).reshape(count * batch_size, -1)
        losses = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(count, -1)
        losses.mean(dim=1).tolist()
        optimizer.zero_grad()
        losses.mean(dim=1).sum().backward()
        optimizer.step()
        durations.append(time.perf_counter() - started)
        if step >= WARMUP_STEPS and sum(durations) > CALIBRATION_SECONDS:
            break
    packed.eval()
    count = min(len(dataset.y_val), CALIBRATION_EVAL_EXAMPLES)
    started = time.perf_counter()
    correct_counts(packed, dataset.x_val[:count], dataset.y_val[:count], chunks(count, 512))
    per_example = (time.perf_counter() - started) / max(1, count)
    return _Timing(setup, statistics.median(durations[WARMUP_STEPS:]), per_example)


def estimate_time(
    runs: list[PlannedRun],
    dataset: Dataset,
    workers: int,
    threads: int | None = None,
    pack: str = "off",
) -> Estimate:
    """Calibrate on ``dataset`` and extrapolate to every unit of work of the plan (``pack``:
    as ``--pack``) and ``workers`` workers of ``threads`` torch threads each (default: the
    cores shared out among the workers)."""
    started = time.perf_counter()
    units = work_units([run.config for run in runs], pack)
    # One calibration per (norm, batch size, architecture), at the largest pack size planned.
    largest: dict[tuple[Any, ...], list[RunConfig]] = {}
    for unit in units:
        key = _calibration_key(unit[0])
        if len(unit) > len(largest.get(key, ())):
            largest[key] = unit
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or threads_per_worker(workers))
    timings: dict[tuple[Any, ...], _Timing] = {}
    try:
        for key, unit in largest.items():
            timings[(*key, len(unit))] = (
                _time_packed_steps(unit, dataset)
                if len(unit) > 1
                else _time_steps(unit[0], dataset)
            )
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
        calibrated=len(timings),
        calibration_seconds=time.perf_counter() - started,
        units=len(units),
        timings=timings,
        split_sizes=split_sizes,
    )


def packing_lines(runs: list[PlannedRun], pack: str) -> list[str]:
    """Which runs train in packs (``--pack``), in how many, and why the others train alone."""
    if pack == "off":
        return ["Packing: off (--pack off): every run trains alone"]
    units = work_units([run.config for run in runs], pack)
    packs = [unit for unit in units if len(unit) > 1]
    packed_runs = sum(len(unit) for unit in packs)
    sizes = sorted({len(unit) for unit in packs}, reverse=True)
    lines = [
        f"Packing: {packed_runs} of {len(runs)} runs train in {len(packs)} packs "
        f"(sizes {', '.join(map(str, sizes)) or '-'}); {len(units) - len(packs)} train alone"
    ]
    reasons: dict[str, int] = {}
    for unit in units:
        if len(unit) == 1:
            reason = _alone_reason(unit[0])
            reasons[reason] = reasons.get(reason, 0) + 1
    lines += [f"  alone ({count}): {reason}" for reason, count in reasons.items()]
    return lines


def _makespan(durations: list[float], workers: int) -> float:
    """Finish time of ``durations`` handed, in order, to whichever of ``workers`` is free first."""
    loads = [0.0] * max(1, min(workers, len(durations)))
    for duration in durations:
        heapq.heappush(loads, heapq.heappop(loads) + duration)
    return max(loads)


def _alone_reason(config: RunConfig) -> str:
    packable, reason = can_pack(config)
    if not packable:
        return reason
    height, width = dataset_for(config).input_shape[1:]
    if pack_size_limit(config.batch_size, height * width) == 1:
        return (
            f"batch size {config.batch_size}: batch x pixels above {PACKED_STEP_PIXELS}, where "
            "packing is slower than training alone"
        )
    return "the only run of its pack key"


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
    lines += packing_lines(runs, pack)
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
