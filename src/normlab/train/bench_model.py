"""``normlab bench --model REF``: a model's training throughput alone and packed at several pack
sizes, for any model a study can build (a built-in name, ``file.py:factory``,
``pkg.module:factory``, a name registered from Python).

Steps are timed as the study's calibration times them (:mod:`.step_timing`: the same step, the
same warm-up, the median step), with a fixed number of timed steps instead of the calibration's
one-second budget. Images/s counts every run's images: ``batch / t_alone`` alone,
``K * batch / t_packed(K)`` packed. Ratios measured in one process are the result; absolute
figures depend on what else the machine runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from normlab.data import Dataset

from .allocator import keep_freed_memory
from .config import RunConfig
from .packed import can_pack
from .step_timing import time_alone, time_packed


@dataclass(frozen=True)
class ModelBenchRow:
    """One (model, norm, batch size): a step alone and packed at each K."""

    model: str
    norm: str
    batch_size: int
    threads: int
    steps: int
    device: str
    alone_step: float
    """Median seconds of one run's step."""
    packed_steps: dict[int, float] = field(default_factory=dict)
    """K -> median seconds of one packed step (all K runs); empty when the model cannot pack."""
    reason: str = ""
    """Why there is no packed measurement ("" when there is)."""

    @property
    def alone_ips(self) -> float:
        return self.batch_size / self.alone_step

    def packed_ips(self, size: int) -> float:
        return size * self.batch_size / self.packed_steps[size]

    def ratio(self, size: int) -> float:
        """Throughput packed at ``size`` over throughput alone."""
        return self.packed_ips(size) / self.alone_ips


def bench_model(
    ref: str,
    dataset: Dataset,
    norm: str,
    batch_sizes: Sequence[int],
    pack_sizes: Sequence[int],
    steps: int,
    threads: int,
    device: str = "cpu",
) -> list[ModelBenchRow]:
    """Time ``ref`` with ``norm`` on ``dataset`` at every batch size, alone and packed at every
    pack size, in this process with ``threads`` torch threads (allocator tuned first, as the
    executors do)."""
    keep_freed_memory()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [
            _row(ref, dataset, norm, batch_size, pack_sizes, steps, threads, device)
            for batch_size in batch_sizes
        ]
    finally:
        torch.set_num_threads(previous)


def _row(
    ref: str,
    dataset: Dataset,
    norm: str,
    batch_size: int,
    pack_sizes: Sequence[int],
    steps: int,
    threads: int,
    device: str,
) -> ModelBenchRow:
    config = RunConfig(
        dataset=dataset.name,
        model=ref,
        norm=norm,
        batch_size=batch_size,
        lr=0.01,
        steps=steps,
        schedule="constant",
    )
    alone = time_alone(
        config, dataset, steps=steps, seconds=math.inf, eval_examples=0, device=device
    )
    packable, reason = can_pack(config)
    packed: dict[int, float] = {}
    if packable:
        for size in pack_sizes:
            configs = [config.replace(seed=seed) for seed in range(size)]
            timing = time_packed(
                configs, dataset, steps=steps, seconds=math.inf, eval_examples=0, device=device
            )
            packed[size] = timing.step
    return ModelBenchRow(
        model=ref,
        norm=norm,
        batch_size=batch_size,
        threads=threads,
        steps=steps,
        device=device,
        alone_step=alone.step,
        packed_steps=packed,
        reason=reason,
    )
