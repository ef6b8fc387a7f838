"""PreciseBN on Batch Renorm, with BRN's r and d corrections on or off during the pass.

    python benchmarks/brn_precise_bn.py [--batch-size 4] [--lr 0.00589] [--seeds 3] [--norm brn]

Trains ``--norm`` (default ``brn``, with the remedies study's shortened schedule) on the built-in
``shapes`` task as ``examples/remedies.toml`` does (3,000 images, depth 8, widths 8/16/32, 6
epochs, weight decay 5e-4; the default lr is the one that study's rerun selected for brn at
batch 4), then measures test accuracy with (a) the EMA running statistics, (b) PreciseBN as the
``gap`` diagnostic computes it (``recalibrate_bn`` over 1,024 training images, the first of a
fixed permutation (``data.evaluation_permutation``; the first 1,024 in stored order before
issue 23, when the figures in docs/PROTOCOL.md were measured), in batches of the training batch
size, r and d off during the pass), (c) the same pass with r and
d left on (what ``recalibrate_bn`` did before: each layer normalizes by the running statistics
being replaced), (d) statistics recomputed layer by layer in eval mode over the same images,
each layer's from the inputs it gets with every earlier layer already recalibrated
(self-consistent, one pass per layer), and (e) batch statistics at the training batch size, the
forward the network trained with (r and d on). One thread; means over the seeds.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Iterator
from unittest import mock

import torch
from torch import nn

from normlab.data import evaluation_permutation
from normlab.data.shapes import shapes
from normlab.study.diagnose import PRECISE_MAX_EXAMPLES
from normlab.surgery import _PopulationStatistics, recalibrate_bn, recalibration_targets
from normlab.train import RunConfig
from normlab.train.engine import train_run
from normlab.train.evaluate import accuracy, chunks

SCHEDULE = {"brn": {"warmup_steps": 20, "relax_steps": 100, "d_relax_steps": 100}}


def _batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    return (x[start:stop] for start, stop in chunks(len(x), batch_size))


def layer_by_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy whose BN statistics are recomputed in eval mode, one layer after the other."""
    model = copy.deepcopy(model).eval()
    for layer in recalibration_targets(model):
        estimate = _PopulationStatistics()
        hook = layer.register_forward_pre_hook(lambda _, args, e=estimate: e.update(args[0]))
        with torch.no_grad():
            for batch in _batches(x, 512):
                model(batch)
        hook.remove()
        with torch.no_grad():
            layer.running_mean.copy_(estimate.mean)
            layer.running_var.copy_(estimate.variance)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="brn")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.00589)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = shapes(num_examples=3000)
    x_test, y_test = data.x_test, data.y_test
    # The examples and order of the gap diagnostic's pass (train.evaluate.precise_batches).
    x_train = data.x_train[evaluation_permutation(len(data.y_train))[:PRECISE_MAX_EXAMPLES]]
    columns = ["ema", "precise", "precise, corrections on", "layer by layer", "batch"]
    results: dict[str, list[float]] = {name: [] for name in columns}
    for seed in range(args.seeds):
        config = RunConfig(
            norm=args.norm, batch_size=args.batch_size, lr=args.lr, seed=seed,
            dataset="shapes", dataset_options={"num_examples": 3000}, depth=8,
            widths=(8, 16, 32), epochs=6, weight_decay=5e-4,
            norm_options=SCHEDULE.get(args.norm, {}),
        )  # fmt: skip
        trained: dict[str, nn.Module] = {}

        def keep(config, model, dataset, trace, trained=trained) -> dict:  # AfterTraining
            trained["model"] = copy.deepcopy(model)
            return {}

        train_run(config, data, after_training=keep)
        model = trained["model"].eval()
        precise = recalibrate_bn(copy.deepcopy(model), _batches(x_train, args.batch_size))
        left_on = mock.Mock(return_value={})  # recalibrate_bn's switch, made a no-op
        with mock.patch("normlab.surgery.set_renormalization", left_on):
            corrected = recalibrate_bn(copy.deepcopy(model), _batches(x_train, args.batch_size))
        assert left_on.called, "recalibrate_bn no longer switches r and d through this name"
        values = {
            "ema": accuracy(model, x_test, y_test),
            "precise": accuracy(precise, x_test, y_test),
            "precise, corrections on": accuracy(corrected, x_test, y_test),
            "layer by layer": accuracy(layer_by_layer(model, x_train), x_test, y_test),
            "batch": accuracy(model, x_test, y_test, "batch", args.batch_size),
        }
        for name, value in values.items():
            results[name].append(value)
        line = ", ".join(f"{name} {value:.3f}" for name, value in values.items())
        print(f"seed {seed}: {line}", flush=True)
    print(
        f"{args.norm}, batch {args.batch_size}, lr {args.lr}, {args.seeds} seeds, mean test accuracy:"
    )
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    print("| " + " | ".join(f"{statistics.mean(results[name]):.3f}" for name in columns) + " |")


if __name__ == "__main__":
    main()
