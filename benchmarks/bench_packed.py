"""Throughput of the packed engine against a plain PyTorch loop and the same loop compiled.

The same runs (digits, the default ResNet, SGD with momentum) are timed in one process,
interleaved, with a fixed thread count: (a) the textbook loop of ``bench_engine.py``, one run
after another; (b) that loop with the model under ``torch.compile`` (compilation excluded by a
warm-up); (c) ``train_packed`` training ``pack_size`` runs as one model (its reported training
time: data order and the per-epoch validation pass excluded from nothing but evaluation).
Images/s counts every run's training images. Ratios, not absolute numbers, are the result: the
machine is shared.

    python benchmarks/bench_packed.py [--threads 1] [--steps 60] [--norms bn,gn,ln]
        [--batch-sizes 2,8,32] [--pack-sizes 8,16,32,64] [--no-compile] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from normlab.data import digits, epoch_order
from normlab.train import RunConfig, build_model
from normlab.train.packed import train_packed

PLAIN_RUNS = 2
"""Runs the plain loops time (their throughput does not depend on how many run)."""


def _plain_seconds(config: RunConfig, data, steps: int, compiled: bool) -> float:
    torch.manual_seed(config.seed)
    model = build_model(config, data).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    forward = torch.compile(model) if compiled else model
    order = epoch_order(config.seed, 0, len(data.y_train), config.batch_size)
    batches = [order[i % len(order)] for i in range(steps)]

    def step(batch):
        loss = F.cross_entropy(forward(data.x_train[batch]), data.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:5]:  # warm-up: compilation, allocator, oneDNN primitive caches
        step(batch)
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    return time.perf_counter() - started


def measure(
    norm: str,
    batch_size: int,
    pack_size: int,
    steps: int,
    threads: int,
    compiled: bool = True,
) -> dict:
    """Images/s of the plain loop, the compiled loop and the packed engine on the same runs."""
    torch.set_num_threads(threads)
    data = digits()
    config = RunConfig(norm=norm, batch_size=batch_size, lr=0.01, steps=steps, schedule="constant")
    configs = [config.replace(seed=seed) for seed in range(pack_size)]
    train_packed(configs[:2], data)  # warm-up of the packed kernels' caches
    plain = sum(_plain_seconds(c, data, steps, False) for c in configs[:PLAIN_RUNS])
    packed_seconds = train_packed(configs, data)[0].wall_time * pack_size
    compiled_seconds = (
        sum(_plain_seconds(c, data, steps, True) for c in configs[:PLAIN_RUNS])
        if compiled
        else float("nan")
    )
    images = steps * batch_size
    plain_ips = PLAIN_RUNS * images / plain
    packed_ips = pack_size * images / packed_seconds
    return {
        "norm": norm,
        "batch_size": batch_size,
        "pack_size": pack_size,
        "threads": threads,
        "steps": steps,
        "plain_ips": plain_ips,
        "compiled_ips": PLAIN_RUNS * images / compiled_seconds,
        "packed_ips": packed_ips,
        "ratio": packed_ips / plain_ips,
        "ratio_compiled": packed_ips * compiled_seconds / (PLAIN_RUNS * images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--norms", default="bn,gn,ln")
    parser.add_argument("--batch-sizes", default="2,8,32")
    parser.add_argument("--pack-sizes", default="8,16,32,64")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    if not args.json:
        print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps")
        print(
            "| norm | batch | pack | plain img/s | compiled img/s | packed img/s | packed/plain |"
        )
        print("|---|---|---|---|---|---|---|")
    for norm in args.norms.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            for pack_size in map(int, args.pack_sizes.split(",")):
                row = measure(
                    norm, batch_size, pack_size, args.steps, args.threads, not args.no_compile
                )
                rows.append(row)
                if not args.json:
                    print(
                        f"| {norm} | {batch_size} | {pack_size} | {row['plain_ips']:,.0f} | "
                        f"{row['compiled_ips']:,.0f} | {row['packed_ips']:,.0f} | "
                        f"{row['ratio']:.1f} |",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
