"""Training-step throughput of K runs packed against one run alone, for any model the study builds.

    python benchmarks/bench_packed_func.py [--model resnet20] [--batch-sizes 2 8 32]
        [--packs 2 4 8 16] [--size 32] [--rounds 5] [--steps 10] [--profile K B]
    python benchmarks/bench_packed_func.py --model resnet --size 8 --compare

One step is forward, per-run cross-entropy, backward and the update (``torch.optim.SGD`` alone,
``PackedOptimizer`` packed), on random images of ``--size`` pixels with 3 channels, one torch
thread. Each figure is the best of ``--rounds`` rounds of ``--steps`` steps (the machine is
shared: the best round is the least disturbed one). images/s = K * batch / step time.
``--compare`` times the write-up's ResNet (``model="resnet"``) through both packers, the channel
packer (``packed_model.py``) and the general one (``packed_func.py``), to pick its path;
``--profile K B`` prints torch.profiler's table for that pack; ``--conv`` times ResNet-20's
first-stage convolution (16 -> 16, 3x3, ``--size`` pixels) forward and backward, alone and as
the one grouped convolution both packers run for K runs (the step's dominant op).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from normlab.data import synthetic
from normlab.norms import norm_entry
from normlab.train import RunConfig, build_model, build_optimizer
from normlab.train.allocator import keep_freed_memory
from normlab.train.packed import build_packed
from normlab.train.packed_func import FunctionalPackedModel
from normlab.train.packed_model import PackedModel
from normlab.train.packed_optim import PackedOptimizer

CLASSES = 10


def best_step(step: Callable[[], None], rounds: int, steps: int) -> float:
    """Seconds of one step: best of ``rounds`` averages over ``steps`` steps, after warm-up."""
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def alone_step(config: RunConfig, data, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(config, data).train()
    optimizer = build_optimizer(model, config)
    x = torch.randn(batch, 3, data.input_shape[1], data.input_shape[2])
    y = torch.randint(0, CLASSES, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def packed_step(configs, data, batch: int, kind: str | None = None) -> Callable[[], None]:
    count = len(configs)
    packed, models = build_packed(configs, data)
    if kind == "channel" and not isinstance(packed, PackedModel):
        packed = PackedModel(models, norm_entry(configs[0].norm).packing)
    if kind == "func" and not isinstance(packed, FunctionalPackedModel):
        packed = FunctionalPackedModel(models)
    parameters = packed.stacked_parameters()
    own = dict(models[0].named_parameters())
    optimizer = PackedOptimizer(
        list(parameters.values()), [own[n].ndim > 1 for n in parameters], configs, 1000
    )
    packed.train()
    x = torch.randn(batch, count * 3, data.input_shape[1], data.input_shape[2])
    y = torch.randint(0, CLASSES, (count, batch))

    def step() -> None:
        logits = packed(x).reshape(count * batch, -1)
        losses = F.cross_entropy(logits, y.reshape(-1), reduction="none").view(count, batch)
        losses = losses.mean(dim=1)
        losses.tolist()
        optimizer.zero_grad()
        losses.sum().backward()
        optimizer.step()

    return step


def convolution_ms(count: int, batch: int, size: int, rounds: int, steps: int) -> float:
    """Milliseconds of one forward + backward of K runs' 16 -> 16 3x3 convolution as one
    grouped convolution (K = 1: a run alone)."""
    x = torch.randn(batch, count * 16, size, size, requires_grad=True)
    w = torch.randn(count * 16, 16, 3, 3, requires_grad=True)

    def step() -> None:
        F.conv2d(x, w, padding=1, groups=count).sum().backward()
        x.grad = w.grad = None

    return 1e3 * best_step(step, rounds, steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--packs", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--profile", type=int, nargs=2, metavar=("K", "B"))
    parser.add_argument("--conv", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    if args.conv:
        for batch in args.batch_sizes:
            alone = convolution_ms(1, batch, args.size, args.rounds, args.steps)
            line = [f"conv batch {batch:3d}: alone {alone:7.2f} ms"]
            for count in args.packs:
                ms = convolution_ms(count, batch, args.size, args.rounds, args.steps)
                line.append(f"K={count} {ms:7.2f} ms ({ms / count:6.2f} per run)")
            print(" | ".join(line), flush=True)
        return
    data = synthetic(
        num_examples=5 * CLASSES, num_classes=CLASSES, channels=3, size=args.size, seed=0
    )
    base = RunConfig(model=args.model, norm=args.norm, dataset="synthetic")
    if args.profile:
        count, batch = args.profile
        step = packed_step([base.replace(seed=s) for s in range(count)], data, batch)
        for _ in range(3):
            step()
        with torch.profiler.profile(record_shapes=True) as profiler:
            for _ in range(args.steps):
                step()
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return
    kinds = ["channel", "func"] if args.compare else [None]
    print(f"{args.model} ({args.norm}), {args.size}x{args.size}, 1 thread; images/s")
    for batch in args.batch_sizes:
        config = base.replace(batch_size=batch)
        alone = batch / best_step(alone_step(config, data, batch), args.rounds, args.steps)
        line = [f"batch {batch:3d}: alone {alone:8.1f}"]
        for kind in kinds:
            for count in args.packs:
                configs = [config.replace(seed=s) for s in range(count)]
                seconds = best_step(
                    packed_step(configs, data, batch, kind), args.rounds, args.steps
                )
                rate = count * batch / seconds
                label = f"{kind} " if kind else ""
                line.append(f"{label}K={count} {rate:8.1f} ({rate / alone:4.2f}x)")
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
