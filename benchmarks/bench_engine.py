"""Per-step throughput of normlab's one-run engine against a plain PyTorch loop, same run.

Both train the same ResNet (digits, SGD with momentum, same batches) for the same number of
steps; the plain loop has no divergence check, schedule, metrics or data-order function. The
ratio engine / plain shows what the engine's bookkeeping costs; achieved GFLOP/s (counted with
torch.utils.flop_counter for one forward + backward) compares against the machine's matmul
ceiling (about 190 GFLOP/s fp32 on 2 cores here).

    python benchmarks/bench_engine.py [--threads 2] [--steps 300] [--norms bn,gn]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from normlab.data import digits, epoch_order
from normlab.train import RunConfig, build_model, train_run


def flops_per_step(config: RunConfig, data) -> float:
    torch.manual_seed(0)
    model = build_model(config, data)
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return float(counter.get_total_flops())


def plain_loop(config: RunConfig, data, steps: int) -> float:
    """Seconds for ``steps`` steps of the textbook loop."""
    torch.manual_seed(config.seed)
    model = build_model(config, data).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    order = epoch_order(config.seed, 0, len(data.y_train), config.batch_size)
    batches = [order[i % len(order)] for i in range(steps)]
    started = time.perf_counter()
    for batch in batches:
        loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def engine(config: RunConfig, data, steps: int) -> float:
    """Seconds of training (evaluation excluded) the engine reports for ``steps`` steps."""
    return train_run(config.replace(steps=steps), data).wall_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--norms", default="bn,gn,none")
    parser.add_argument("--batch-sizes", default="2,8,32,128")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = digits()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps per measurement"
    )
    print("| norm | batch | plain loop img/s | engine img/s | engine / plain | GFLOP/s (engine) |")
    print("|---|---|---|---|---|---|")
    for norm in args.norms.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            config = RunConfig(norm=norm, batch_size=batch_size, lr=0.01)
            steps = args.steps
            plain_loop(config, data, 20)  # warm-up: allocator, oneDNN primitive caches
            plain = min(plain_loop(config, data, steps) for _ in range(2))
            ours = min(engine(config, data, steps) for _ in range(2))
            flops = flops_per_step(config, data) * steps
            print(
                f"| {norm} | {batch_size} | {steps * batch_size / plain:,.0f} | "
                f"{steps * batch_size / ours:,.0f} | {plain / ours:.2f} | {flops / ours / 1e9:.1f} |"
            )


if __name__ == "__main__":
    main()
