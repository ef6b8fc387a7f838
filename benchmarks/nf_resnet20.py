"""Normalization-free ResNet-20 on digits: does Fixup / SkipInit train what plain ``none`` can't?

Trains depth-20 ResNets (widths 16/32/64, batch 32, SGD with momentum, cosine schedule, the
engine's defaults otherwise) on the bundled digits data for each configuration, learning rate
and seed, and prints test accuracy mean +- std over seeds per cell, the final training loss,
the number of diverged runs, and the total wall time. The last table picks, per configuration,
the learning rate with the best mean validation accuracy (val selects, test reports).

    python benchmarks/nf_resnet20.py [--epochs 10] [--seeds 3] [--lrs 0.01 0.05 0.1] [--workers 2]

One torch thread per worker process; about 8 s per run on one CPU core.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from normlab.data import digits
from normlab.train import RunConfig, RunResult, train_run

CONFIGS = (("none", "default"), ("none", "fixup"), ("none", "skipinit"), ("bn", "default"))
"""(norm, init) pairs compared."""


def _one_thread() -> None:
    torch.set_num_threads(1)


def _train(config: RunConfig) -> RunResult:
    return train_run(config, digits())


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}"


def _row(label: str, lr: float, results: list[RunResult]) -> str:
    done = [r for r in results if r.status == "done"]
    test = _mean_std([r.test_acc for r in done if r.test_acc is not None])
    loss = f"{statistics.mean(r.train_loss for r in done):.4f}" if done else "-"
    diverged = sum(r.status == "diverged" for r in results)
    return f"| {label:<18} | {lr:<5g} | {test:>12} | {loss:>10} | {diverged}/{len(results)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    base = RunConfig(dataset="digits", depth=20, widths=(16, 32, 64), batch_size=32)
    cells = [
        (norm, init, lr, base.replace(norm=norm, init=init, lr=lr, epochs=args.epochs, seed=seed))
        for norm, init in CONFIGS
        for lr in args.lrs
        for seed in range(args.seeds)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
        results = list(pool.map(_train, [config for *_, config in cells]))
    wall_time = time.perf_counter() - started

    grouped: dict[tuple[str, str, float], list[RunResult]] = {}
    for (norm, init, lr, _), result in zip(cells, results, strict=True):
        grouped.setdefault((norm, init, lr), []).append(result)

    header = "| norm + init        | lr    | test acc (%) | train loss | diverged |"
    rule = "|--------------------|-------|--------------|------------|----------|"
    print(f"ResNet-20 (16/32/64) on digits, batch 32, {args.epochs} epochs, {args.seeds} seeds")
    print(header, rule, sep="\n")
    for (norm, init, lr), group in grouped.items():
        print(_row(f"{norm} + {init}", lr, group))

    print("\nBest learning rate per configuration (by mean validation accuracy):")
    print(header, rule, sep="\n")
    for norm, init in CONFIGS:

        def mean_val(lr: float, key: tuple[str, str] = (norm, init)) -> float:
            done = [r.val_acc for r in grouped[(*key, lr)] if r.status == "done"]
            return statistics.mean(done) if done else -1.0

        best = max(args.lrs, key=mean_val)
        print(_row(f"{norm} + {init}", best, grouped[(norm, init, best)]))
    print(f"\n{len(cells)} runs, {args.workers} workers, wall time {wall_time:.0f} s")


if __name__ == "__main__":
    main()
