"""Aggregate plain run records into cells, select learning rates, name winners.

Pure functions over the dicts ``Store.records()`` returns (no torch, no I/O). A *cell* is one
combination of factor levels (everything but lr and seed). Under the tuned protocol the selected
lr of a cell maximizes the mean *validation* accuracy over seeds (a diverged run counts as 0, so
an unstable lr is not selected for a lucky seed; ties go to the smaller lr); the cell reports the
*test* accuracy of its runs at that lr, every seed of it: a run that diverged there counts as
:data:`DIVERGED_ACCURACY`, as it counted in selection.

Under the adaptive protocol (docs/PROTOCOL.md) a run's ``role`` says which seeds do what:
``"tune"`` runs select the lr (validation accuracy), ``"eval"`` runs, trained afresh at the
selected lr with other seeds, are the only ones whose test accuracy is reported and compared,
so the seeds that chose the lr never also judge it. Fixed-protocol runs (``role`` ``""`` or
absent) do both, as above.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .statistics import MIN_SEEDS_FOR_CI, holm, paired_t_test

FINISHED = ("done", "diverged")
TUNE, EVALUATE = "tune", "eval"
"""Run roles of the adaptive protocol (``runs.role``); a fixed-protocol run has role ``""``."""
DIVERGED_ACCURACY = 0.0
"""Test (and validation) accuracy of a diverged run: 0, as in lr selection. Dropping it from the
test statistics would report the survivors of an lr that selection charged for the divergence."""
NOT_EVALUATED = "lr selected; no evaluation run finished yet"
"""What a table shows for an adaptive cell whose evaluation seeds have not finished."""
WINNER_ALPHA = 0.05
"""Family-wise error rate of the winners table's paired tests (Holm over its groups)."""


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
    """Test accuracies (running statistics) of the finished runs at the selected lr, a diverged
    run as :data:`DIVERGED_ACCURACY`."""
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
    the selected lr that recorded one (norms with running statistics), a diverged run there as
    :data:`DIVERGED_ACCURACY`."""
    test_seeds: tuple[int, ...] = ()
    """The seed of each entry of ``test_accs``."""
    val_accs_by_lr: dict[float, tuple[float | None, ...]] = field(default_factory=dict)
    """Validation accuracy per lr and seed (None: the run diverged)."""

    @property
    def complete(self) -> bool:
        """Every planned run of the cell has finished."""
        return self.finished == self.planned

    @property
    def all_diverged(self) -> bool:
        return self.seeds > 0 and self.diverged == self.seeds

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


def adaptive(runs: list[dict[str, Any]]) -> bool:
    """Whether ``runs`` come from the adaptive protocol (some run has a tuning or evaluation
    role)."""
    return any(r.get("role") in (TUNE, EVALUATE) for r in runs)


def selection_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose validation accuracy selects the lr: the tuning runs of an adaptive cell,
    every run otherwise."""
    return [r for r in runs if r.get("role") == TUNE] if adaptive(runs) else list(runs)


def reported_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs whose test accuracy is reported and compared: the evaluation runs of an adaptive
    cell, every run otherwise."""
    return [r for r in runs if r.get("role") == EVALUATE] if adaptive(runs) else list(runs)


def summarize(records: list[dict[str, Any]]) -> list[CellSummary]:
    """One :class:`CellSummary` per cell that has at least one finished run.

    The lr is selected on :func:`selection_runs`; the test statistics are those of
    :func:`reported_runs` at it (an adaptive cell whose evaluation runs have not finished yet
    has ``seeds`` 0 and no test accuracy).
    """
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_cell[cell_key(full_cell(record))].append(record)
    summaries = []
    for runs in by_cell.values():
        finished = [r for r in runs if r["status"] in FINISHED]
        selecting = [r for r in selection_runs(runs) if r["status"] in FINISHED]
        if not selecting:
            continue
        by_lr: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for run in selecting:
            by_lr[run["config"]["lr"]].append(run)
        val_by_lr = {
            lr: statistics.fmean(r["val_acc"] if r["status"] == "done" else 0.0 for r in lr_runs)
            for lr, lr_runs in sorted(by_lr.items())
        }
        selected = max(sorted(val_by_lr), key=lambda lr: (val_by_lr[lr], -lr))
        every = sorted(
            (
                r
                for r in reported_runs(runs)
                if r["status"] in FINISHED and r["config"]["lr"] == selected
            ),
            key=lambda r: r["config"]["seed"],
        )
        chosen = [r for r in every if r["status"] == "done"]
        summaries.append(
            CellSummary(
                cell=full_cell(runs[0]),
                selected_lr=selected,
                lr_grid=tuple(sorted({r["config"]["lr"] for r in runs})),
                val_by_lr=val_by_lr,
                seeds=len(every),
                diverged=len(every) - len(chosen),
                diverged_total=sum(r["status"] == "diverged" for r in finished),
                test_accs=tuple(_accuracy(r, "test_acc") for r in every),
                test_accs_batch_stats=tuple(_accuracy(r, "test_acc_batch_stats") for r in every),
                finished=len(finished),
                planned=len(runs),
                collapsed=sum(bool(r.get("collapsed")) for r in chosen),
                collapsed_total=sum(bool(r.get("collapsed")) for r in finished),
                precise_accs=_precise_accuracies(every),
                test_seeds=tuple(r["config"]["seed"] for r in every),
                val_accs_by_lr={
                    lr: tuple(r["val_acc"] if r["status"] == "done" else None for r in lr_runs)
                    for lr, lr_runs in sorted(by_lr.items())
                },
            )
        )
    return summaries


def _precise_accuracies(runs: list[dict[str, Any]]) -> tuple[float, ...]:
    """PreciseBN accuracies of the runs with a gap record; once any run has one, a diverged run
    counts as DIVERGED_ACCURACY, as in the EMA accuracies beside it (same seeds, same mean)."""
    recorded = [r for r in runs if "gap" in (r.get("diagnostics") or {})]
    if not recorded:
        return ()
    return tuple(
        DIVERGED_ACCURACY if r["status"] == "diverged" else r["diagnostics"]["gap"]["precise_acc"]
        for r in runs
        if r["status"] == "diverged" or r in recorded
    )


def _accuracy(record: dict[str, Any], key: str) -> float:
    return DIVERGED_ACCURACY if record["status"] == "diverged" else record[key]


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
    """The best level beats the runner-up in a paired t-test by seed, Holm-corrected over the
    groups of the call (:data:`WINNER_ALPHA`)."""
    measured_noise: bool = True
    """The two cells share at least three seeds, so the paired test exists."""
    p_holm: float | None = None
    """Holm-adjusted p of the paired test of best against runner-up."""


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
    """For each combination of the other factors, the ``compare`` level with the best test mean;
    its win is *clear* when a paired t-test by seed against the runner-up is significant after
    Holm over the groups (a margin against the seed standard deviations ignores the pairing)."""
    groups: dict[str, list[CellSummary]] = defaultdict(list)
    for summary in summaries:
        if summary.test_mean is None:
            continue
        groups[cell_key(context(summary.cell, compare))].append(summary)
    drafts = []
    for key, members in groups.items():
        best, *others = sorted(members, key=lambda s: -s.test_mean)
        second = others[0] if others else None
        differences = _paired(best, second) if second is not None else []
        p = paired_t_test(differences) if len(differences) >= MIN_SEEDS_FOR_CI else None
        drafts.append((key, best, second, p))
    adjusted = holm([p for *_, p in drafts])
    result = []
    for (key, best, second, _), p_holm in zip(drafts, adjusted, strict=True):
        result.append(
            Winner(
                group=json.loads(key),
                best=variant(best.cell, compare),
                best_mean=best.test_mean,
                runner_up=variant(second.cell, compare) if second is not None else None,
                margin=best.test_mean - second.test_mean if second is not None else None,
                clear=p_holm is not None and p_holm < WINNER_ALPHA,
                measured_noise=p_holm is not None,
                p_holm=p_holm,
            )
        )
    return result


def _paired(first: CellSummary, second: CellSummary) -> list[float]:
    """Per-seed differences first - second over the seeds both cells have."""
    a = dict(zip(first.test_seeds, first.test_accs, strict=True))
    b = dict(zip(second.test_seeds, second.test_accs, strict=True))
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def format_mean_std(summary: CellSummary) -> str:
    """``0.962 ± 0.004``, with diverged runs noted (``diverged (3/3)`` when all at the lr did)."""
    if summary.seeds == 0:
        return NOT_EVALUATED
    if summary.test_mean is None or summary.all_diverged:
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
    """The widest contiguous run of a cell's grid learning rates within ``margin`` (plus a noise
    allowance) of its best."""

    cell: dict[str, Any]
    low: float
    high: float
    decades: float
    """log10(high / low): 0 when a single learning rate qualifies."""
    at_low_edge: bool = False
    """The range starts at the smallest lr tried (and has more than one lr to choose from): it may
    extend below the grid, so its width is a lower bound."""
    at_high_edge: bool = False
    """The range ends at the largest lr tried: it may extend above the grid."""


def usable_lr_range(summary: CellSummary, margin: float = 0.01) -> LearningRateRange | None:
    """The widest contiguous interval of the cell's lr grid whose mean validation accuracy
    (diverged runs as 0, as in lr selection) is within ``margin`` of the best, plus a noise
    allowance: the standard error of the difference of the two means, sqrt(s_b^2 / n_b + s^2 /
    n), from the seed standard deviations of the runs that trained (a diverged run lowers the
    mean but is not noise). The allowance keeps seed noise from cutting a range short; it is an
    allowance, not a test. Ties go to the interval holding the selected lr. A range that touches
    an end of the grid is marked (it may continue beyond it). BN's claimed benefit (Ioffe &
    Szegedy 2015; Bjorck et al. 2018) is a wider range. ``normlab.diagnostics.usable_lr_range``
    (on raw run records) applies the margin alone. None when the best mean is 0: every run
    diverged, and no lr is usable (every lr would otherwise be "within the margin" of 0).
    """
    grid = sorted(summary.val_by_lr)
    means = [summary.val_by_lr[lr] for lr in grid]
    errors = [_standard_error(summary.val_accs_by_lr.get(lr, ())) for lr in grid]
    best_index = grid.index(summary.selected_lr)
    best = means[best_index]
    if best <= DIVERGED_ACCURACY:
        return None
    candidates = []
    start = None
    usable = [
        m >= best - margin - math.hypot(errors[best_index], e)
        for m, e in zip(means, errors, strict=True)
    ]
    for index, ok in enumerate([*usable, False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            width = math.log10(grid[index - 1] / grid[start])
            candidates.append((width, start <= best_index <= index - 1, start, index - 1))
            start = None
    width, _, low, high = max(candidates)
    several = len(grid) > 1
    return LearningRateRange(
        summary.cell,
        grid[low],
        grid[high],
        width,
        at_low_edge=several and low == 0,
        at_high_edge=several and high == len(grid) - 1,
    )


def _standard_error(values: tuple[float | None, ...]) -> float:
    """sd / sqrt(n) of a mean over ``values`` (None counted in n, not in sd); 0 below two."""
    trained = [v for v in values if v is not None]
    if len(trained) < 2:
        return 0.0
    return statistics.stdev(trained) / math.sqrt(len(values))
