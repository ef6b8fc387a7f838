"""Throughput of the packed engine against a plain PyTorch loop and the same loop compiled.

The same runs (digits, the default ResNet, SGD with momentum, constant learning rate) are timed
in one process with a fixed thread count: (a) the textbook loop (forward, cross-entropy,
backward, ``torch.optim.SGD``), one run after another; (b) that loop with the model under
``torch.compile`` (compilation excluded by a warm-up); (c) ``train_packed`` training
``pack_size`` runs as one model (its training time: the epoch's data gather included, the
validation passes excluded). Images/s counts every run's training images. Achieved GFLOP/s is
images/s times the forward + backward FLOPs of one image (``torch.utils.flop_counter``), as a
fraction of the fp32 matmul peak measured in the same process. Ratios measured in one process
are the result: absolute numbers depend on what else runs on the machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from normlab.data import Dataset, digits, epoch_order

from .allocator import keep_freed_memory
from .config import RunConfig
from .engine import build_model
from .packed import train_packed

PLAIN_RUNS = 2
"""Runs each plain loop times (its throughput does not depend on how many run)."""
WARMUP_STEPS = 5
"""Untimed steps of each plain loop (compilation, allocator, oneDNN primitive caches)."""


@dataclass(frozen=True)
class BenchRow:
    """One (norm, batch size, pack size) measurement."""

    norm: str
    batch_size: int
    pack_size: int
    threads: int
    steps: int
    plain_ips: float
    compiled_ips: float | None
    packed_ips: float
    ratio: float
    """packed / plain images per second."""
    ratio_compiled: float | None
    """packed / compiled images per second."""
    gflops_per_image: float
    packed_gflops: float
    peak_gflops: float
    packed_peak_fraction: float
    plain_peak_fraction: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def matmul_peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Measured fp32 matmul GFLOP/s of this process (best of ``repeats`` n x n products:
    2 n^3 flops each), with torch's current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def flops_per_image(config: RunConfig, data: Dataset) -> float:
    """Forward + backward FLOPs of one training image of ``config``'s model."""
    model = build_model(config, data).train()
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / config.batch_size


def plain_seconds(config: RunConfig, data: Dataset, steps: int, compiled: bool) -> float:
    """Seconds of ``steps`` textbook training steps of ``config`` (after the warm-up)."""
    torch.manual_seed(config.seed)
    model = build_model(config, data).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    forward = torch.compile(model) if compiled else model
    order = epoch_order(config.seed, 0, len(data.y_train), config.batch_size)
    batches = [order[i % len(order)] for i in range(steps + WARMUP_STEPS)]

    def step(batch: torch.Tensor) -> None:
        loss = F.cross_entropy(forward(data.x_train[batch]), data.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:WARMUP_STEPS]:
        step(batch)
    started = time.perf_counter()
    for batch in batches[WARMUP_STEPS:]:
        step(batch)
    return time.perf_counter() - started


def measure(
    norm: str,
    batch_size: int,
    pack_size: int,
    steps: int,
    threads: int,
    compiled: bool = True,
    data: Dataset | None = None,
    peak_gflops: float | None = None,
) -> BenchRow:
    """Images/s of the plain loop, the compiled loop and the packed engine on the same runs
    (this process's allocator tuned first, as the executors do: :mod:`.allocator`)."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    data = data or digits()
    peak = peak_gflops or matmul_peak_gflops()
    config = RunConfig(norm=norm, batch_size=batch_size, lr=0.01, steps=steps, schedule="constant")
    configs = [config.replace(seed=seed) for seed in range(pack_size)]
    train_packed(configs[: min(2, pack_size)], data)  # warm-up of the packed kernels' caches
    plain = sum(plain_seconds(c, data, steps, False) for c in configs[:PLAIN_RUNS])
    packed_seconds = train_packed(configs, data)[0].wall_time * pack_size
    images = steps * batch_size
    plain_ips = PLAIN_RUNS * images / plain
    packed_ips = pack_size * images / packed_seconds
    compiled_ips = None
    if compiled:
        compiled_total = sum(plain_seconds(c, data, steps, True) for c in configs[:PLAIN_RUNS])
        compiled_ips = PLAIN_RUNS * images / compiled_total
    gflops_per_image = flops_per_image(config, data) / 1e9
    return BenchRow(
        norm=norm,
        batch_size=batch_size,
        pack_size=pack_size,
        threads=threads,
        steps=steps,
        plain_ips=plain_ips,
        compiled_ips=compiled_ips,
        packed_ips=packed_ips,
        ratio=packed_ips / plain_ips,
        ratio_compiled=packed_ips / compiled_ips if compiled_ips else None,
        gflops_per_image=gflops_per_image,
        packed_gflops=packed_ips * gflops_per_image,
        peak_gflops=peak,
        packed_peak_fraction=packed_ips * gflops_per_image / peak,
        plain_peak_fraction=plain_ips * gflops_per_image / peak,
    )


def run_bench(
    norms: Sequence[str],
    batch_sizes: Sequence[int],
    pack_sizes: Sequence[int],
    steps: int,
    threads: int,
    compiled: bool = True,
    on_row: object = None,
) -> list[BenchRow]:
    """:func:`measure` over every (norm, batch size, pack size) on one digits load, the matmul
    peak measured again for each row (a shared machine's load changes); ``on_row(row)`` is
    called as each row is measured."""
    torch.set_num_threads(threads)
    data = digits()
    rows = []
    for norm in norms:
        for batch_size in batch_sizes:
            for pack_size in pack_sizes:
                row = measure(norm, batch_size, pack_size, steps, threads, compiled, data)
                rows.append(row)
                if callable(on_row):
                    on_row(row)
    return rows
