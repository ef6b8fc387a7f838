"""One way to time a training step, alone and packed: what the dry run's calibration, the pack
size rule (``study/packrule.py``) and ``normlab bench --model`` all measure.

A step is timed as the engines take it: forward, cross-entropy, backward, optimizer step (the
run's own torch optimizer alone; :class:`~.packed_optim.PackedOptimizer` for a pack, with the
one synchronization of a packed step, its losses read back for the divergence check). The
first steps are untimed (allocator and autograd warm-up make them several times slower) and the
median of the timed ones is the step time: a median is robust to the preemptions of a shared
machine, where a mean is not. On CUDA every timed interval ends with a synchronization (kernels
are asynchronous, the clock would otherwise time their launch).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from normlab.data import Dataset, epoch_order

from .config import RunConfig
from .device import dataset_on
from .engine import build_model
from .evaluate import accuracy, chunks
from .optim import build_optimizer
from .packed import build_packed
from .packed_data import RunStreams, packed_batches
from .packed_eval import correct_counts
from .packed_optim import PackedOptimizer

WARMUP_STEPS = 2
"""Untimed first steps (allocator and autograd warm-up make them several times slower)."""
TIMED_STEPS = 5
"""Timed optimizer steps at most; their median is the step time."""
TIMED_SECONDS = 1.0
"""Stop timing after this long (once one step past warm-up is timed): slow steps are measured
well enough by few of them."""
EVAL_EXAMPLES = 128
"""Validation examples timed: evaluation cost is linear in the examples, and the whole split
took most of a pack's calibration (3.6 s of 5 for K = 25 at batch 2, loaded)."""


@dataclass(frozen=True)
class StepTiming:
    """Measured costs of one configuration, alone (one run) or packed (all K runs at once)."""

    setup: float
    """Seconds to build the model(s) and optimizer."""
    step: float
    """Seconds per optimizer step (median), all runs of a pack together."""
    example: float
    """Seconds per evaluated example (0.0 when evaluation was not timed)."""

    def scaled(self, factor: float) -> StepTiming:
        return StepTiming(self.setup * factor, self.step * factor, self.example * factor)


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _median_steps(step: Callable[[int], None], steps: int, seconds: float, device: str) -> float:
    """Median seconds of ``step(i)`` over at most ``steps`` timed calls after the warm-up."""
    durations: list[float] = []
    for index in range(WARMUP_STEPS + steps):
        _synchronize(device)
        started = time.perf_counter()
        step(index)
        _synchronize(device)
        durations.append(time.perf_counter() - started)
        if index >= WARMUP_STEPS and sum(durations[WARMUP_STEPS:]) > seconds:
            break
    return statistics.median(durations[WARMUP_STEPS:])


def time_alone(
    config: RunConfig,
    dataset: Dataset,
    *,
    steps: int = TIMED_STEPS,
    seconds: float = TIMED_SECONDS,
    eval_examples: int = EVAL_EXAMPLES,
    device: str = "cpu",
) -> StepTiming:
    """Time building, the optimizer steps and one validation pass of ``config`` trained alone."""
    dataset = dataset_on(dataset, device)
    torch.manual_seed(config.seed)
    # The first build of a process pays one-off lazy initialization, and so does its first torch
    # optimizer (4.5 s of a 5.7 s calibration on a loaded machine: imports torch._dynamo).
    build_optimizer(build_model(config, dataset).to(device), config)
    started = time.perf_counter()
    model = build_model(config, dataset).to(device)
    optimizer = build_optimizer(model, config)
    setup = time.perf_counter() - started
    order = epoch_order(config.seed, 0, len(dataset.y_train), config.batch_size)
    model.train()

    def step(index: int) -> None:
        batch = order[index % len(order)].to(dataset.x_train.device)
        loss = F.cross_entropy(model(dataset.x_train[batch]), dataset.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_seconds = _median_steps(step, steps, seconds, device)
    return StepTiming(setup, step_seconds, _time_eval(model, dataset, eval_examples, device))


def time_packed(
    configs: Sequence[RunConfig],
    dataset: Dataset,
    *,
    steps: int = TIMED_STEPS,
    seconds: float = TIMED_SECONDS,
    eval_examples: int = EVAL_EXAMPLES,
    device: str = "cpu",
) -> StepTiming:
    """:func:`time_alone` for a pack of ``configs``: seconds per packed step (all K runs) and
    per validation example evaluated by all K runs at once."""
    configs = list(configs)
    dataset = dataset_on(dataset, device)
    started = time.perf_counter()
    packed = build_packed(configs, dataset)[0].to(device)  # the packer train_packed uses
    parameters = list(packed.parameters())
    optimizer = PackedOptimizer(parameters, [p.ndim > 1 for p in parameters], configs, 1000)
    setup = time.perf_counter() - started
    count, batch_size = len(configs), configs[0].batch_size
    streams = RunStreams(configs, dataset.y_train.cpu())
    index = streams.take(WARMUP_STEPS + steps)
    xs, ys = packed_batches(dataset.x_train, dataset.y_train, index, configs, 0)
    packed.train()

    def step(index: int) -> None:
        x, y = xs[index % len(xs)], ys[index % len(ys)]
        logits = packed(x).reshape(count * batch_size, -1)
        losses = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(count, -1)
        losses.mean(dim=1).tolist()  # the packed engine's one synchronization per step
        optimizer.zero_grad()
        losses.mean(dim=1).sum().backward()
        optimizer.step()

    step_seconds = _median_steps(step, steps, seconds, device)
    packed.eval()
    count_eval = min(len(dataset.y_val), eval_examples)
    example = 0.0
    if count_eval:
        _synchronize(device)
        started = time.perf_counter()
        correct_counts(
            packed, dataset.x_val[:count_eval], dataset.y_val[:count_eval], chunks(count_eval, 512)
        )
        _synchronize(device)
        example = (time.perf_counter() - started) / count_eval
    return StepTiming(setup, step_seconds, example)


def _time_eval(model: torch.nn.Module, dataset: Dataset, examples: int, device: str) -> float:
    count = min(len(dataset.y_val), examples)
    if not count:
        return 0.0
    _synchronize(device)
    started = time.perf_counter()
    accuracy(model, dataset.x_val[:count], dataset.y_val[:count])
    _synchronize(device)
    return (time.perf_counter() - started) / count
