"""``normlab bench --model REF``: measure, then print a table or JSON (``train/bench_model.py``
measures; the best pack size and the rule's choice come from ``study/packrule.py``, the same
decision a study makes when it is planned)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from normlab.data import load_dataset
from normlab.study.packrule import choose_pack_size
from normlab.train.bench_model import ModelBenchRow, bench_model
from normlab.train.config import RunConfig
from normlab.train.device import fix_numerics, resolve_device
from normlab.train.engine import build_model
from normlab.train.model_fit import check_model_fits
from normlab.train.model_ref import absolute_ref

DEFAULT_PACK_SIZES = (2, 4, 8, 16)
DEFAULT_STEPS = 10
"""Timed steps per measurement with ``--model`` (a packed step of a CIFAR ResNet at batch 32 and
K = 16 takes seconds on one thread)."""


def row_dict(row: ModelBenchRow) -> dict[str, Any]:
    """One row as JSON: images/s alone and at each K, ratios, the best K and the rule's K."""
    record: dict[str, Any] = {
        "model": row.model,
        "norm": row.norm,
        "batch_size": row.batch_size,
        "threads": row.threads,
        "steps": row.steps,
        "device": row.device,
        "alone_ips": row.alone_ips,
        "packed": [
            {"pack_size": k, "ips": row.packed_ips(k), "ratio": row.ratio(k)}
            for k in sorted(row.packed_steps)
        ],
        "best_pack_size": None,
        "best_ratio": None,
        "rule_pack_size": 1,
        "reason": row.reason,
    }
    if row.packed_steps:
        choice = choose_pack_size(row.alone_step, row.packed_steps)
        best = max(sorted(row.packed_steps), key=row.ratio)
        record.update(
            best_pack_size=best,
            best_ratio=row.ratio(best),
            rule_pack_size=choice.size,
            reason=choice.reason,
        )
    return record


def table_lines(rows: Sequence[dict[str, Any]], pack_sizes: Sequence[int]) -> list[str]:
    """A Markdown table: images/s alone, packed at each K (ratio), best K, the rule's K."""
    head = ["model", "norm", "batch", "alone img/s", *(f"K={k} img/s (ratio)" for k in pack_sizes)]
    head += ["best K", "best ratio", "rule K"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        packed = {entry["pack_size"]: entry for entry in row["packed"]}
        cells = [row["model"], row["norm"], str(row["batch_size"]), f"{row['alone_ips']:,.0f}"]
        cells += [
            f"{packed[k]['ips']:,.0f} ({packed[k]['ratio']:.2f}x)" if k in packed else "-"
            for k in pack_sizes
        ]
        best = row["best_pack_size"]
        cells += [
            "-" if best is None else str(best),
            "-" if best is None else f"{row['best_ratio']:.2f}x",
            str(row["rule_pack_size"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def run_model_bench(
    ref: str,
    data: str,
    norm: str,
    batch_sizes: Sequence[int],
    pack_sizes: Sequence[int] | None,
    steps: int | None,
    threads: int,
    device: str,
    as_json: bool,
) -> None:
    """What ``normlab bench --model`` prints."""
    device = resolve_device(device)
    if device == "cuda":
        fix_numerics()
    dataset = load_dataset(data)
    ref = absolute_ref(ref)
    probe = build_model(RunConfig(dataset=dataset.name, model=ref, norm=norm), dataset)
    check_model_fits(probe, dataset, ref, data_option="--data")
    sizes = list(pack_sizes or DEFAULT_PACK_SIZES)
    steps = steps or DEFAULT_STEPS
    if not as_json:
        click.echo(
            f"{ref} on {dataset.describe()}: {steps} timed steps per measurement, {threads} "
            f"torch thread(s), {device}"
        )
    measured = bench_model(ref, dataset, norm, batch_sizes, sizes, steps, threads, device)
    rows = [row_dict(row) for row in measured]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in table_lines(rows, sizes):
        click.echo(line)
    for row in rows:
        if row["reason"]:
            click.echo(f"batch {row['batch_size']}: trains alone under the rule: {row['reason']}")
