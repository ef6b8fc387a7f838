"""Aggregate plain run records into cells, select learning rates, name winners.

Pure functions over the dicts ``Store.records()`` returns (no torch, no I/O). A *cell* is one
combination of factor levels (everything but lr and seed). Under the tuned protocol the selected
lr of a cell maximizes the mean *validation* accuracy over seeds (a diverged run counts as 0, so
an unstable lr is not selected for a lucky seed; ties go to the smaller lr); the cell reports the
*test* accuracy of its runs at that lr.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

FINISHED = ("done", "diverged")


@dataclass(frozen=True)
class CellSummary:
    """One cell at its selected learning rate."""

    cell: dict[str, Any]
    selected_lr: float
    lr_grid: tuple[float, ...]
    val_by_lr: dict[float, float]
    """Mean validation accuracy per lr (diverged runs as 0)."""
    seeds: int
    """Runs at the selected lr (finished ones)."""
    diverged: int
    """Diverged runs at the selected lr."""
    diverged_total: int
    """Diverged runs over the whole lr grid."""
    test_accs: tuple[float, ...]
    """Test accuracies (running statistics) of the finished runs at the selected lr."""
    test_accs_batch_stats: tuple[float, ...]
    finished: int
    """Runs of the cell (all lrs and seeds) that finished: done or diverged."""
    planned: int
    """Runs of the cell in the store (pending, running and failed ones too)."""
    collapsed: int = 0
    """Runs at the selected lr that finished at chance (``done`` but ``collapsed``)."""
    collapsed_total: int = 0
    """Collapsed runs over the whole lr grid."""
    precise_accs: tuple[float, ...] = ()
    """Test accuracies with PreciseBN statistics (the ``gap`` diagnostic) of the finished runs at
    the selected lr that recorded one (norms with running statistics)."""

    @property
    def complete(self) -> bool:
        """Every planned run of the cell has finished."""
        return self.finished == self.planned

    @property
    def test_mean(self) -> float | None:
        return statistics.fmean(self.test_accs) if self.test_accs else None

    @property
    def test_std(self) -> float | None:
        return statistics.stdev(self.test_accs) if len(self.test_accs) > 1 else None

    @property
    def precise_mean(self) -> float | None:
        return statistics.fmean(self.precise_accs) if self.precise_accs else None

    @property
    def batch_stats_mean(self) -> float | None:
        return statistics.fmean(self.test_accs_batch_stats) if self.test_accs_batch_stats else None

    @property
    def lr_at_grid_edge(self) -> bool:
        """The selected lr is the smallest or largest tried: the grid may be too narrow."""
        return len(self.lr_grid) > 1 and self.selected_lr in (self.lr_grid[0], self.lr_grid[-1])


def cell_key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


REPORTED_AXES = ("norm", "batch_size")
"""Config fields every cell carries, factors or not, so that reports always have rows/columns."""


def full_cell(record: dict[str, Any]) -> dict[str, Any]:
    """The record's cell with the reported axes filled from its config when a study holds them
    fixed (``norm`` set under ``[run]`` is still the norm of the table's row)."""
    fixed = {axis: record["config"][axis] for axis in REPORTED_AXES if axis in record["config"]}
    return {**fixed, **record["cell"]}


def summarize(records: list[dict[str, Any]]) -> list[CellSummary]:
    """One :class:`CellSummary` per cell that has at least one finished run."""
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_cell[cell_key(full_cell(record))].append(record)
    summaries = []
    for runs in by_cell.values():
        finished = [r for r in runs if r["status"] in FINISHED]
        if not finished:
            continue
        by_lr: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for run in finished:
            by_lr[run["config"]["lr"]].append(run)
        val_by_lr = {
            lr: statistics.fmean(r["val_acc"] if r["status"] == "done" else 0.0 for r in lr_runs)
            for lr, lr_runs in sorted(by_lr.items())
        }
        selected = max(sorted(val_by_lr), key=lambda lr: (val_by_lr[lr], -lr))
        chosen = [r for r in by_lr[selected] if r["status"] == "done"]
        summaries.append(
            CellSummary(
                cell=full_cell(runs[0]),
                selected_lr=selected,
                lr_grid=tuple(sorted({r["config"]["lr"] for r in runs})),
                val_by_lr=val_by_lr,
                seeds=len(by_lr[selected]),
                diverged=len(by_lr[selected]) - len(chosen),
                diverged_total=sum(r["status"] == "diverged" for r in finished),
                test_accs=tuple(r["test_acc"] for r in chosen),
                test_accs_batch_stats=tuple(r["test_acc_batch_stats"] for r in chosen),
                finished=len(finished),
                planned=len(runs),
                collapsed=sum(bool(r.get("collapsed")) for r in chosen),
                collapsed_total=sum(bool(r.get("collapsed")) for r in finished),
                precise_accs=tuple(
                    r["diagnostics"]["gap"]["precise_acc"]
                    for r in chosen
                    if "gap" in r.get("diagnostics", {})
                ),
            )
        )
    return summaries


@dataclass(frozen=True)
class Winner:
    """Best level of the compared factor in one group of cells."""

    group: dict[str, Any]
    """Levels of the other factors (e.g. the batch size)."""
    best: str
    best_mean: float
    runner_up: str | None
    margin: float | None
    """best_mean minus the runner-up's mean."""
    clear: bool
    """The margin exceeds both cells' seed standard deviations."""
    measured_noise: bool = True
    """Both cells have two or more seeds, so a seed standard deviation exists."""


def _scoped(key: str, cell: dict[str, Any], compare: str) -> bool:
    # A study factor scoped to one norm ("norm_options.gn.groups") names a variant of that norm,
    # not a context shared by the other norms.
    return compare == "norm" and key.startswith(f"norm_options.{cell.get('norm')}.")


def variant(cell: dict[str, Any], compare: str = "norm") -> str:
    """Label of the compared level, with options scoped to it: ``gn`` or ``gn(groups=2)``."""
    label = str(cell.get(compare))
    options = [
        f"{key.rsplit('.', 1)[1]}={value}"
        for key, value in sorted(cell.items())
        if _scoped(key, cell, compare)
    ]
    return f"{label}({', '.join(options)})" if options else label


def context(cell: dict[str, Any], compare: str = "norm") -> dict[str, Any]:
    """The cell's other factor levels: what a fair comparison of ``compare`` holds fixed."""
    return {k: v for k, v in cell.items() if k != compare and not _scoped(k, cell, compare)}


def winners(summaries: list[CellSummary], compare: str = "norm") -> list[Winner]:
    """For each combination of the other factors, the ``compare`` level with the best test mean."""
    groups: dict[str, list[CellSummary]] = defaultdict(list)
    for summary in summaries:
        if summary.test_mean is None:
            continue
        groups[cell_key(context(summary.cell, compare))].append(summary)
    result = []
    for key, members in groups.items():
        best, *others = sorted(members, key=lambda s: -s.test_mean)
        second = others[0] if others else None
        measured = second is not None and None not in (best.test_std, second.test_std)
        margin = best.test_mean - second.test_mean if second is not None else None
        result.append(
            Winner(
                group=json.loads(key),
                best=variant(best.cell, compare),
                best_mean=best.test_mean,
                runner_up=variant(second.cell, compare) if second is not None else None,
                margin=margin,
                clear=measured and margin > max(best.test_std, second.test_std),
                measured_noise=measured,
            )
        )
    return result


def format_mean_std(summary: CellSummary) -> str:
    """``0.962 ± 0.004``, with diverged runs noted (``diverged (3/3)`` when all at the lr did)."""
    if summary.test_mean is None:
        return f"diverged ({summary.diverged}/{summary.seeds})"
    text = f"{summary.test_mean:.3f}"
    if summary.test_std is not None:
        text += f" ± {summary.test_std:.3f}"
    if summary.diverged:
        text += f" ({summary.diverged} div.)"
    if not summary.complete:
        # The lr was selected from the runs that finished so far: say so.
        text += f" [{summary.finished}/{summary.planned} runs finished]"
    return text


@dataclass(frozen=True)
class LearningRateRange:
    """The widest contiguous run of a cell's grid learning rates within ``margin`` of its best."""

    cell: dict[str, Any]
    low: float
    high: float
    decades: float
    """log10(high / low): 0 when a single learning rate qualifies."""


def usable_lr_range(summary: CellSummary, margin: float = 0.01) -> LearningRateRange:
    """The widest contiguous interval of the cell's lr grid whose mean validation accuracy
    (diverged runs as 0, as in lr selection) is within ``margin`` of the best; ties go to the
    interval holding the selected lr. BN's claimed benefit (Ioffe & Szegedy 2015; Bjorck et al.
    2018) is a wider range. The same rule as ``normlab.diagnostics.usable_lr_range`` (which
    works on raw run records), here on a summary so that the report needs no other layer.
    """
    grid = sorted(summary.val_by_lr)
    means = [summary.val_by_lr[lr] for lr in grid]
    best = max(means)
    best_index = grid.index(summary.selected_lr)
    candidates = []
    start = None
    for index, ok in enumerate([*(m >= best - margin for m in means), False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            width = math.log10(grid[index - 1] / grid[start])
            candidates.append((width, start <= best_index <= index - 1, start, index - 1))
            start = None
    width, _, low, high = max(candidates)
    return LearningRateRange(summary.cell, grid[low], grid[high], width)
