"""BN's deficit per batch size, split into optimization / inference statistics / rest, read
from a finished study's store (every run records its ``gap`` diagnostic by default).

    python benchmarks/decompose_store.py OUT_DIR [--batch-sizes 2,4,32]

For each batch size: BN's runs at its selected learning rate, and the best other norm's runs at
theirs (highest mean test accuracy); seed means of test accuracy, train loss and accuracy and of
BN's EMA / PreciseBN / batch-statistics accuracies go into ``normlab.diagnostics.decompose``.
Points of test accuracy; a positive deficit means BN is worse.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from normlab.analysis import summarize
from normlab.diagnostics import GapReport, decompose
from normlab.study import STORE_NAME, open_store


def selected_runs(records: list[dict], summary) -> list[dict]:
    return [
        r
        for r in records
        if r["status"] == "done"
        and all(r["config"].get(k) == v for k, v in summary.cell.items() if k in r["config"])
        and r["config"]["lr"] == summary.selected_lr
    ]


def mean(values) -> float:
    return statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--batch-sizes", default="2,4,32")
    arguments = parser.parse_args()
    with open_store(arguments.out_dir / STORE_NAME, create=False) as store:
        records = store.records(store.study_ids()[-1])
    summaries = summarize(records)
    print(
        "batch  alternative  BN EMA  PreciseBN  batch-stats  deficit  optimization  "
        "inference-stats  rest   (points)"
    )
    for batch_size in map(int, arguments.batch_sizes.split(",")):
        cells = {s.cell["norm"]: s for s in summaries if s.cell.get("batch_size") == batch_size}
        if "bn" not in cells:
            continue
        others = {n: s for n, s in cells.items() if n != "bn" and s.test_mean is not None}
        best = max(others, key=lambda n: others[n].test_mean)
        bn_runs = selected_runs(records, cells["bn"])
        alt_runs = selected_runs(records, cells[best])
        gaps = [r["diagnostics"]["gap"] for r in bn_runs if "gap" in r.get("diagnostics", {})]
        gap = GapReport(
            running_acc=mean(g["running_acc"] for g in gaps),
            precise_acc=mean(g["precise_acc"] for g in gaps),
            batch_acc=mean(g["batch_acc"] for g in gaps),
            batch_size=batch_size,
            precise_seconds=mean(g["precise_seconds"] for g in gaps),
            precise_examples=gaps[0]["precise_examples"],
        )
        split = decompose(
            gap,
            bn_train_loss=mean(r["train_loss"] for r in bn_runs),
            bn_train_acc=mean(r["train_acc"] for r in bn_runs),
            alternative_test_acc=mean(r["test_acc"] for r in alt_runs),
            alternative_train_loss=mean(r["train_loss"] for r in alt_runs),
            alternative_train_acc=mean(r["train_acc"] for r in alt_runs),
            alternative=best,
        )
        print(
            f"{batch_size:>5}  {best:<11}  {100 * gap.running_acc:6.2f}  "
            f"{100 * gap.precise_acc:9.2f}  {100 * gap.batch_acc:11.2f}  "
            f"{100 * split.deficit:+7.2f}  {100 * split.optimization:+12.2f}  "
            f"{100 * split.inference_statistics:+15.2f}  {100 * split.generalization:+5.2f}"
            f"   ({len(bn_runs)} bn seeds, {len(alt_runs)} {best} seeds; PreciseBN "
            f"{gap.precise_seconds:.2f} s per run)"
        )


if __name__ == "__main__":
    main()
