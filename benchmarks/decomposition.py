"""BN's deficit at small batch sizes split into optimization / inference statistics / rest.

For each batch size, BN and the alternatives (none, ln, gn) train at the learning rates the
default study selected (README's table, digits), seeds 0..S-1; every run records its ``gap``
(EMA vs PreciseBN vs batch statistics, ``normlab.study.diagnose``). The best alternative is the
one with the highest mean test accuracy; ``normlab.diagnostics.decompose`` splits the deficit
on seed means. Prints one line per batch size and the PreciseBN cost per run.

    python benchmarks/decomposition.py [--dataset digits] [--seeds 3] [--epochs 6]
        [--max-train N] [--model resnet] [--widths 16,32,64]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from normlab.data import load_dataset
from normlab.diagnostics import GapReport, decompose
from normlab.study.diagnose import after_training_for
from normlab.train import RunConfig, train_run

# Selected on validation by the default digits study (README), per (norm, batch size).
SELECTED_LR = {
    2: {"bn": 0.0075, "none": 0.0075, "ln": 0.000833, "gn": 0.000833},
    4: {"bn": 0.00354, "none": 0.0106, "ln": 0.00354, "gn": 0.0106},
    32: {"bn": 0.09, "none": 0.09, "ln": 0.01, "gn": 0.01},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--model", default="resnet")
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--batch-sizes", default="2,4,32")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = {"max_train_examples": args.max_train} if args.max_train else {}
    dataset = load_dataset(args.dataset, **options)
    callback = after_training_for(("gap",))
    out = []
    for batch_size in map(int, args.batch_sizes.split(",")):
        runs: dict[str, list] = {}
        for norm, lr in SELECTED_LR[batch_size].items():
            for seed in range(args.seeds):
                config = RunConfig(
                    dataset=args.dataset,
                    dataset_options=options,
                    model=args.model,
                    depth=8,
                    widths=tuple(map(int, args.widths.split(","))),
                    norm=norm,
                    batch_size=batch_size,
                    lr=lr,
                    seed=seed,
                    epochs=args.epochs,
                    momentum=0.9,
                    weight_decay=5e-4,
                    schedule="cosine",
                )
                result = train_run(config, dataset, after_training=callback)
                runs.setdefault(norm, []).append(result)
        bn = [r for r in runs.pop("bn") if r.status == "done"]
        means = {
            norm: statistics.fmean(r.test_acc for r in results if r.status == "done")
            for norm, results in runs.items()
        }
        best = max(means, key=means.get)
        alternative = [r for r in runs[best] if r.status == "done"]
        gaps = [r.diagnostics["gap"] for r in bn]
        gap = GapReport(
            running_acc=statistics.fmean(g["running_acc"] for g in gaps),
            precise_acc=statistics.fmean(g["precise_acc"] for g in gaps),
            batch_acc=statistics.fmean(g["batch_acc"] for g in gaps),
            batch_size=batch_size,
            precise_seconds=statistics.fmean(g["precise_seconds"] for g in gaps),
            precise_examples=gaps[0]["precise_examples"],
        )
        parts = decompose(
            gap,
            bn_train_loss=statistics.fmean(r.train_loss for r in bn),
            bn_train_acc=statistics.fmean(r.train_acc for r in bn),
            alternative_test_acc=means[best],
            alternative_train_loss=statistics.fmean(r.train_loss for r in alternative),
            alternative_train_acc=statistics.fmean(r.train_acc for r in alternative),
            alternative=best,
        )
        wall = statistics.fmean(r.wall_time for r in bn)
        line = {
            "batch_size": batch_size,
            "bn_test_ema": gap.running_acc,
            "bn_test_precise": gap.precise_acc,
            "bn_test_batch_stats": gap.batch_acc,
            **parts.to_dict(),
            "alternative_test": means[best],
            "precise_seconds_per_run": gap.precise_seconds,
            "bn_train_seconds_per_run": wall,
            "bn_runs": len(bn),
        }
        out.append(line)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
