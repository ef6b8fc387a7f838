"""The Markdown summary of a study, ``DIR/report.md``: every figure computed from the store."""

from __future__ import annotations

from typing import Any

from normlab.analysis import CellSummary

from .tables import lr_range_table, markdown_table, result_tables, statistics_gap_table


def render_markdown(
    name: str,
    spec: dict[str, Any],
    summaries: list[CellSummary],
    status_counts: dict[str, int],
    batch_norms: set[str],
    wall_time: float | None = None,
) -> str:
    """A readable report: protocol, result tables, inference-statistics gap, run accounting."""
    base = spec["base"]
    lr = spec["lr"]
    lines = [
        f"# {name}",
        "",
        "## Protocol",
        "",
        f"- Data: `{base['dataset']}`{_options(base.get('dataset_options'))}, fixed stratified "
        "train / val / test split; val selects the learning rate, test reports.",
        f"- Model: {_model(base)}.",
        f"- Budget: {_budget(base)}; optimizer {base['optimizer']} (momentum "
        f"{base['momentum']}, weight decay {base['weight_decay']}), {base['schedule']} schedule.",
        f"- Learning rate: {_lr_protocol(lr)}.",
        f"- Seeds: {spec['seeds']} (seed s gives every normalization the same data order).",
        "",
        "## Results",
        "",
    ]
    for table in result_tables(summaries):
        lines += [f"### {table.title}", "", markdown_table(table), ""]
    lines += [
        "`*` after an lr: the selected lr is at the edge of the grid tried (the best lr may lie "
        "outside it). *within seed noise*: the margin is smaller than a seed standard deviation.",
        "",
    ]
    gap = statistics_gap_table(summaries, batch_norms)
    if gap is not None:
        lines += [f"### {gap.title}", "", markdown_table(gap), ""]
        lines += [
            "A positive gap means the running statistics used at inference lose accuracy against "
            "the statistics the network was trained with.",
            "",
        ]
    ranges = lr_range_table(summaries)
    if ranges is not None:
        lines += [f"### {ranges.title}", "", markdown_table(ranges), ""]
        lines += ["BN's claimed benefit is a wider range (Ioffe & Szegedy 2015).", ""]
    counts = ", ".join(f"{count} {status}" for status, count in sorted(status_counts.items()))
    lines += ["## Runs", "", f"- {counts}."]
    unstable = [s for s in summaries if s.diverged_total or s.collapsed_total]
    if unstable:
        listed = "; ".join(
            f"{', '.join(f'{k}={v}' for k, v in s.cell.items())}: {s.diverged_total} diverged, "
            f"{s.collapsed_total} collapsed"
            for s in unstable
        )
        lines.append(
            f"- Unstable runs over the whole lr grid, per cell (collapsed: finished at chance, "
            f"final train loss about ln(classes)): {listed}."
        )
    collapsed = sum(s.collapsed_total for s in summaries)
    if collapsed:
        lines.append(f"- {collapsed} finished run(s) collapsed (counted with divergence above).")
    if wall_time is not None:
        lines.append(f"- Wall time of the last invocation: {wall_time:.0f} s.")
    lines += ["- Every run, with its config and per-epoch curves: `normlab.db` (SQLite).", ""]
    return "\n".join(lines)


def _options(options: dict[str, Any] | None) -> str:
    return f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""


def _budget(base: dict[str, Any]) -> str:
    if base.get("steps"):
        return f"{base['steps']} optimizer steps per run (equal steps)"
    return f"{base['epochs']} epochs per run (equal examples across batch sizes)"


def _lr_protocol(lr: dict[str, Any]) -> str:
    if lr["mode"] == "fixed":
        return f"fixed at {lr['base_lr']}"
    if lr["mode"] == "scaled":
        return f"{lr['rule']} scaling from {lr['base_lr']} at batch size {lr['base_batch_size']}"
    grid = lr["grid"] or f"{lr['points']} values {lr['spacing']}x apart around {lr['center']}"
    return (
        f"tuned per cell on validation accuracy over {grid} at batch size "
        f"{lr['base_batch_size']}, moved with {lr['grid_scaling']} scaling of the batch size"
    )


def _model(base: dict[str, Any]) -> str:
    model = base.get("model", "resnet")
    if model != "resnet":
        text = f"`{model}`"
    else:
        text = (
            f"ResNet of the write-up's seed blocks (docs/WRITEUP.md), depth {base['depth']}, "
            f"widths {base['widths']}"
        )
    if base.get("augment"):
        text += "; training batches augmented (random crop with 4-pixel padding, flip)"
    if base.get("classes_per_batch"):
        text += f"; correlated batches of {base['classes_per_batch']} classes each"
    return text
