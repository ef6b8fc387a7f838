"""Forward, backward and update time of one packed step (digits shapes, random data).

    python benchmarks/packed_step.py NORM PACK_SIZE BATCH_SIZE [--profile]

Builds the packed model of PACK_SIZE default-ResNet runs and times the three phases separately
(best of 5 rounds of 20 steps, 1 thread, or ``T`` threads from the environment: ``T=2 python
benchmarks/packed_step.py ...``), with the engine's allocator settings (``train/allocator.py``);
``--profile`` adds a torch.profiler table by op and input shape.
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

from normlab.data import digits
from normlab.norms import norm_entry
from normlab.train import RunConfig, build_model
from normlab.train.allocator import keep_freed_memory
from normlab.train.packed_model import PackedModel
from normlab.train.packed_optim import PackedOptimizer


def main() -> None:
    torch.set_num_threads(int(os.environ.get("T", "1")))
    keep_freed_memory()
    norm, count, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = digits()
    configs = [RunConfig(norm=norm, batch_size=batch_size, seed=s) for s in range(count)]
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, data))
    packed = PackedModel(models, norm_entry(norm).packing)
    parameters = list(packed.parameters())
    optimizer = PackedOptimizer(parameters, [p.ndim > 1 for p in parameters], configs, 1000)
    x = torch.randn(batch_size, count * data.in_channels, *data.input_shape[1:])
    y = torch.randint(0, data.num_classes, (count, batch_size))

    def phases() -> tuple[float, float, float]:
        started = time.perf_counter()
        logits = packed(x).reshape(count * batch_size, -1)
        losses = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(count, -1)
        losses = losses.mean(dim=1)
        losses.tolist()
        forward = time.perf_counter()
        optimizer.zero_grad()
        losses.sum().backward()
        backward = time.perf_counter()
        optimizer.step()
        return forward - started, backward - forward, time.perf_counter() - backward

    for _ in range(5):
        phases()
    best = [float("inf")] * 3
    for _ in range(5):
        totals = [0.0] * 3
        for _ in range(20):
            totals = [t + v / 20 for t, v in zip(totals, phases(), strict=True)]
        best = [min(a, b) for a, b in zip(totals, best, strict=True)]
    step = sum(best)
    print(
        f"{norm} K={count} batch {batch_size}: forward {best[0] * 1e3:.2f} ms, backward "
        f"{best[1] * 1e3:.2f} ms, update {best[2] * 1e3:.2f} ms; {count * batch_size / step:.0f} "
        "images/s"
    )
    if "--profile" in sys.argv:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
            for _ in range(30):
                phases()
        averages = profiler.key_averages(group_by_input_shape=True)
        print(averages.table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
