"""What augmentation costs per training step: ResNet-20 (or the seed ResNet) on 3x32x32, one
thread, the same steps with and without ``augment_batch``, interleaved in one process.

    python benchmarks/bench_augment.py [--batch-sizes 2,32] [--steps 60] [--model resnet20]

Prints the median step time (forward, backward, SGD step) with augmentation off and on, and the
median time of ``augment_batch`` alone.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from normlab.data import augment_batch, load_dataset
from normlab.train import RunConfig, build_model, build_optimizer


def step_times(model_name: str, batch_size: int, steps: int, rounds: int = 5) -> dict[str, float]:
    dataset = load_dataset("shapes", num_examples=1000)
    config = RunConfig(dataset="shapes", model=model_name, batch_size=batch_size, lr=0.01)
    torch.manual_seed(0)
    model = build_model(config, dataset)
    optimizer = build_optimizer(model, config)
    times: dict[str, list[float]] = {"off": [], "on": [], "augment_only": []}
    step = 0
    for _ in range(rounds):
        for mode in ("off", "on"):
            for _ in range(steps // rounds):
                index = torch.randint(len(dataset.y_train), (batch_size,))
                x, y = dataset.x_train[index], dataset.y_train[index]
                started = time.perf_counter()
                if mode == "on":
                    x = augment_batch(x, 0, step)
                    times["augment_only"].append(time.perf_counter() - started)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                times[mode].append(time.perf_counter() - started)
                step += 1
    return {key: statistics.median(values) * 1e3 for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="2,32")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--model", default="resnet20")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    print("model     batch  step off (ms)  step on (ms)  augment alone (ms)  overhead")
    for batch_size in (int(b) for b in arguments.batch_sizes.split(",")):
        t = step_times(arguments.model, batch_size, arguments.steps)
        print(
            f"{arguments.model:<9} {batch_size:>5}  {t['off']:>13.2f}  {t['on']:>12.2f}  "
            f"{t['augment_only']:>18.3f}  {100 * (t['on'] / t['off'] - 1):+7.1f}%"
        )


if __name__ == "__main__":
    main()
