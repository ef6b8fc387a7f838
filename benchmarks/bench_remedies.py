"""Cost per training step of BN's small-batch remedies against BN (issue 17).

Each norm trains the seed ResNet (``resnet``, depth 8) and ``resnet20`` on the built-in 32x32
``shapes`` task with SGD, one thread, in one process: (a) unpacked, a plain loop of forward,
backward and SGD step after a warm-up long enough that every method runs its moving-average /
window path (short warm-up options below); (b) packed, ``train_packed`` training ``pack_size``
runs as one model, per run-step (its reported wall time per run, divided by the steps), where
the model and norm pack (``resnet20`` has no packed form: "not packed"). The
result is milliseconds per step and the ratio to BN measured in the same process; absolute
numbers depend on the (shared) machine.

    python benchmarks/bench_remedies.py [--threads 1] [--steps 30] [--batch-sizes 2,32]
        [--models resnet,resnet20] [--norms bn,mabn,...] [--pack-size 4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from normlab.data.shapes import shapes
from normlab.train import RunConfig, build_model
from normlab.train.packed import can_pack, train_packed

NORMS = "bn,mabn,cbn,cbn_naive,evalnorm,brn,gbn,gn"
WARMUP = 5
"""Untimed steps; the options below put every method past its own warm-up by then."""
OPTIONS = {
    "mabn": {"window": 16, "warmup_steps": 2, "renorm_steps": 3},
    "cbn": {"window": 8, "burnin_steps": 2},
    "cbn_naive": {"window": 8, "burnin_steps": 2},
    "brn": {"warmup_steps": 2, "relax_steps": 2, "d_relax_steps": 2},
    "gn": {"groups": 4},
}


def _config(model: str, norm: str, batch_size: int, steps: int) -> RunConfig:
    return RunConfig(
        dataset="shapes",
        model=model,
        norm=norm,
        norm_options=OPTIONS.get(norm, {}),
        batch_size=batch_size,
        lr=0.01,
        steps=steps,
        schedule="constant",
    )


def unpacked_ms(config: RunConfig, data, steps: int) -> float:
    """Milliseconds per training step of the plain loop, after ``WARMUP`` untimed steps."""
    torch.manual_seed(0)
    model = build_model(config, data).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = torch.randint(0, len(data.y_train), (config.batch_size,), generator=generator)
        loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - started) / steps


def packed_ms(config: RunConfig, data, steps: int, pack_size: int) -> float:
    """Milliseconds per run-step of ``train_packed`` (its wall time per run over its steps)."""
    configs = [config.replace(seed=seed, steps=steps + WARMUP) for seed in range(pack_size)]
    results = train_packed(configs, data)
    return 1000 * results[0].wall_time / (steps + WARMUP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-sizes", default="2,32")
    parser.add_argument("--models", default="resnet,resnet20")
    parser.add_argument("--norms", default=NORMS)
    parser.add_argument("--pack-size", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = shapes(num_examples=1000)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps")
    print("| model | batch | norm | ms/step | x BN | packed ms/run-step | x BN packed |")
    print("|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            baseline = baseline_packed = None
            for norm in args.norms.split(","):
                config = _config(model, norm, batch_size, args.steps)
                plain = unpacked_ms(config, data, args.steps)
                packable = can_pack(config)[0]
                packed = packed_ms(config, data, args.steps, args.pack_size) if packable else None
                if norm == "bn":
                    baseline, baseline_packed = plain, packed
                ratio = f"{plain / baseline:.2f}" if baseline else "-"
                packed_text = f"{packed:.1f}" if packed is not None else "not packed"
                packed_ratio = (
                    f"{packed / baseline_packed:.2f}" if packed and baseline_packed else "-"
                )
                print(
                    f"| {model} | {batch_size} | {norm} | {plain:.1f} | {ratio} | "
                    f"{packed_text} | {packed_ratio} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
