"""Forward + backward time per step of the built-in CIFAR models on 3x32x32 inputs.

One SGD-free step (forward, cross-entropy, backward) of a model in training mode, timed with
``timeit`` after warm-up; prints the median and the best of ``--repeats`` timings per batch size
and the achieved GFLOP/s (torch.utils.flop_counter, one forward + backward).

    python benchmarks/bench_models.py [--threads 1] [--models resnet20] [--norms bn,gn]
        [--batch-sizes 2,32] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from normlab.models import build_builtin_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="resnet20")
    parser.add_argument("--norms", default="bn,gn")
    parser.add_argument("--batch-sizes", default="2,32")
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    print(f"threads={arguments.threads}, torch {torch.__version__}")
    for name in arguments.models.split(","):
        for norm in arguments.norms.split(","):
            torch.manual_seed(0)
            model = build_builtin_model(name, num_classes=10, in_channels=3, norm=norm).train()
            for batch_size in (int(b) for b in arguments.batch_sizes.split(",")):
                time_steps(model, f"{name:<16} {norm:<4}", batch_size, arguments.repeats)


def time_steps(model: torch.nn.Module, label: str, batch_size: int, repeats: int) -> None:
    """Print the median and best seconds of one forward + backward step at ``batch_size``."""
    x = torch.randn(batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up
    number = max(1, 64 // batch_size)
    times = [t / number for t in timeit.repeat(step, number=number, repeat=repeats)]
    median, best = statistics.median(times), min(times)
    gflops = counter.get_total_flops() / best / 1e9
    print(
        f"{label} batch {batch_size:>3}: median {median * 1e3:7.1f} ms, best "
        f"{best * 1e3:7.1f} ms per step, {batch_size / best:7.1f} images/s, {gflops:5.1f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
