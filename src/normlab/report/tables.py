"""Result tables as plain data (title, header, rows), shared by the CLI and the Markdown report.

Rows are the levels of ``rows`` (the norm), columns the levels of ``columns`` (the batch size);
one table per combination of any further factors (e.g. one per dropout level).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from normlab.analysis import (
    CellSummary,
    LearningRateRange,
    Winner,
    context,
    format_mean_std,
    usable_lr_range,
    variant,
    winners,
)


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


def _levels(summaries: list[CellSummary], label: Callable[[CellSummary], Any]) -> list[Any]:
    seen: list[Any] = []
    for summary in summaries:
        value = label(summary)
        if value not in seen:
            seen.append(value)
    return seen


def _group_title(group: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items())


def _grouped(summaries: list[CellSummary], rows: str, columns: str) -> dict[str, list[CellSummary]]:
    groups: dict[str, list[CellSummary]] = defaultdict(list)
    for summary in summaries:
        rest = {k: v for k, v in context(summary.cell, rows).items() if k != columns}
        groups[json.dumps(rest, sort_keys=True)].append(summary)
    return groups


def result_tables(
    summaries: list[CellSummary], rows: str = "norm", columns: str = "batch_size"
) -> list[Table]:
    """Test accuracy (mean ± std over seeds at the selected lr), the selected lr, and the winner
    (clear when a paired t-test by seed against the runner-up is significant after Holm over the
    table's columns)."""
    tables = []
    for group_key, members in _grouped(summaries, rows, columns).items():
        group = json.loads(group_key)
        column_levels = _levels(members, lambda s: s.cell.get(columns))
        cells = {(variant(s.cell, rows), s.cell.get(columns)): s for s in members}
        header = [rows, *(f"{columns} {c}" for c in column_levels)]
        body = []
        for row in _levels(members, lambda s: variant(s.cell, rows)):
            line = [str(row)]
            for column in column_levels:
                summary = cells.get((row, column))
                if summary is None:
                    line.append("—")
                    continue
                text = format_mean_std(summary)
                edge = "*" if summary.lr_at_grid_edge else ""
                line.append(f"{text} (lr {summary.selected_lr:g}{edge})")
            body.append(line)
        best = {json.dumps({columns: w.group.get(columns)}): w for w in winners(members, rows)}
        line = ["winner"]
        for column in column_levels:
            winner: Winner | None = best.get(json.dumps({columns: column}))
            if winner is None:
                line.append("—")
            elif winner.runner_up is None:
                line.append(winner.best)
            else:
                margin = f"{winner.margin:+.3f} over {winner.runner_up}"
                if not winner.measured_noise:
                    line.append(f"{winner.best} ({margin}; fewer than 3 paired seeds, no test)")
                elif winner.clear:
                    line.append(f"{winner.best} ({margin}, paired Holm p = {winner.p_holm:.2g})")
                else:
                    line.append(
                        f"no clear winner: {winner.best} {margin}, paired Holm p = "
                        f"{winner.p_holm:.2g}"
                    )
        body.append(line)
        title = "Test accuracy, mean ± std over seeds at the selected learning rate"
        if group:
            title += f" ({_group_title(group)})"
        tables.append(Table(title, header, body))
    return tables


def statistics_gap_table(summaries: list[CellSummary], batch_norms: set[str]) -> Table | None:
    """Cells of ``batch_norms`` (norms with batch statistics): test accuracy with running (EMA)
    statistics vs with batch statistics of the training batch size."""
    members = [
        s
        for s in summaries
        if s.cell.get("norm") in batch_norms
        and s.test_mean is not None
        and s.batch_stats_mean is not None
    ]
    if not members:
        return None
    if any(s.precise_mean is not None for s in members):
        # The gap diagnostic recorded PreciseBN accuracies: EMA vs PreciseBN vs batch statistics.
        header = ["cell", "EMA (eval mode)", "PreciseBN", "batch statistics", "PreciseBN - EMA"]
        rows = [
            [
                _group_title(s.cell),
                f"{s.test_mean:.3f}",
                _optional(s.precise_mean),
                f"{s.batch_stats_mean:.3f}",
                _optional(None if s.precise_mean is None else s.precise_mean - s.test_mean, "+"),
            ]
            for s in members
        ]
        title = "Inference statistics: running (EMA) vs PreciseBN vs batch statistics"
        return Table(title, header, rows)
    header = ["cell", "EMA (eval mode)", "batch statistics", "gap"]
    rows = [
        [
            _group_title(s.cell),
            f"{s.test_mean:.3f}",
            f"{s.batch_stats_mean:.3f}",
            f"{s.batch_stats_mean - s.test_mean:+.3f}",
        ]
        for s in members
    ]
    return Table("Inference statistics: running (EMA) vs batch statistics", header, rows)


def _optional(value: float | None, sign: str = "") -> str:
    return "—" if value is None else f"{value:{sign}.3f}"


def lr_range_table(
    summaries: list[CellSummary], rows: str = "norm", columns: str = "batch_size"
) -> Table | None:
    """Per norm and batch size, the usable lr range (within 0.01 val accuracy of the best plus one
    standard error of the difference, :func:`~normlab.analysis.summary.usable_lr_range`) and its
    width in decades, ``≥`` and the edge when the range touches an end of the grid (it may
    extend beyond);
    None when no cell tried more than one lr."""
    members = [s for s in summaries if len(s.val_by_lr) > 1]
    if not members:
        return None
    column_levels = _levels(members, lambda s: s.cell.get(columns))
    body = []
    for row in _levels(members, lambda s: _row_label(s, rows, columns)):
        line = [row]
        for column in column_levels:
            match = [
                usable_lr_range(s)
                for s in members
                if _row_label(s, rows, columns) == row and s.cell.get(columns) == column
            ]
            line.append(_lr_range(match[0]) if match else "—")
        body.append(line)
    header = [rows, *(f"{columns} {c}" for c in column_levels)]
    title = (
        "Usable learning-rate range (mean val accuracy within 0.01 of the best, plus one standard "
        "error of the difference; width in decades; ≥ and a grid edge: the range reaches that "
        "end of the grid tried and may extend beyond it)"
    )
    return Table(title, header, body)


def _lr_range(found: LearningRateRange) -> str:
    edges = [side for side, at in (("low", found.at_low_edge), ("high", found.at_high_edge)) if at]
    if not edges:
        return f"{found.low:g}–{found.high:g} ({found.decades:.2f} dec.)"
    where = "both grid edges" if len(edges) == 2 else f"{edges[0]} grid edge"
    return f"{found.low:g}–{found.high:g} (≥ {found.decades:.2f} dec., {where})"


def _row_label(summary: CellSummary, rows: str, columns: str) -> str:
    """The row of a cell: its ``rows`` variant, with the other factors (but ``columns``)."""
    rest = {k: v for k, v in context(summary.cell, rows).items() if k != columns}
    label = variant(summary.cell, rows)
    return f"{label} ({_group_title(rest)})" if rest else label


def markdown_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)
