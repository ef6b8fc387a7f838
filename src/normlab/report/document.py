"""A study's report as data: verdict, tables, figures, notes, reproduction. Rendered to HTML,
Markdown and the terminal by :mod:`.html`, :mod:`.markdown` and :mod:`.write` (terminal summary).

Built from :class:`StudyInput`, the plain records the store holds (no torch, no live model).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from normlab.analysis.adaptive import AssessedComparison, assess_study
from normlab.analysis.compare import CellStats, Comparison, cell_statistics, compare_cells
from normlab.analysis.summary import NOT_EVALUATED, TUNE, CellSummary, cell_key, full_cell
from normlab.analysis.verdict import Verdict, adjusted, points, unadjusted, verdict
from normlab.analysis.verdict_adaptive import adaptive_verdict
from normlab.keras.equivalents import keras_layer

from . import figures
from .adaptive import assessed_table, design_of, intervals_figure, protocol_lines
from .tables import Table, lr_range_table, statistics_gap_table


@dataclass(frozen=True)
class StudyInput:
    """Everything a report reads, as plain values (``Store`` methods return them)."""

    name: str
    spec: dict[str, Any]
    records: list[dict[str, Any]]
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)
    legs: list[float] = field(default_factory=list)
    """Wall time of each invocation that ran the study."""
    estimate: dict[str, Any] | None = None
    """The calibrated time estimate made before the study trained (``Store.estimate``)."""
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    """The command that reruns the study."""
    spec_text: str = ""
    """The spec as TOML (written beside the report)."""


@dataclass(frozen=True)
class Report:
    title: str
    question: str
    verdict: Verdict
    tables: list[Table]
    figures: list[figures.Figure]
    notes: list[str]
    protocol: list[str]
    runs: list[str]
    reproduction: StudyInput


def compared(spec: dict[str, Any]) -> tuple[str, str]:
    """The compared factor and its baseline level (first level; the base value if not varied)."""
    factor = spec.get("compare", "norm")
    levels = spec.get("factors", {}).get(factor)
    return factor, str(levels[0] if levels else spec["base"].get(factor))


def cell_label(cell: CellStats) -> str:
    """``0.962 [0.955, 0.968] (lr 0.03*)``: mean, 95% t-interval (or ± std), selected lr; a
    diverged seed counts as accuracy 0 in the mean (``(1 div.)``)."""
    if cell.summary.seeds == 0:
        return NOT_EVALUATED
    if cell.mean is None or cell.summary.all_diverged:
        return f"diverged ({cell.summary.diverged}/{cell.summary.seeds})"
    text = f"{cell.mean:.3f}"
    if cell.ci is not None:
        text += f" [{cell.ci.low:.3f}, {cell.ci.high:.3f}]"
    elif cell.std is not None:
        text += f" ± {cell.std:.3f}"
    if len(cell.summary.lr_grid) > 1:
        edge = "*" if cell.summary.lr_at_grid_edge else ""
        text += f" (lr {cell.summary.selected_lr:g}{edge})"
    if cell.summary.diverged:
        text += f" ({cell.summary.diverged} div.)"
    if not cell.summary.complete:
        text += f" [{cell.summary.finished}/{cell.summary.planned} runs finished]"
    return text


def main_tables(cells: list[CellStats], compare: str, adaptive: bool = False) -> list[Table]:
    """Rows: levels of the compared factor; columns: batch sizes; one table per other context
    (``adaptive``: the accuracies are over evaluation seeds, the lr chosen on tuning seeds)."""
    groups: dict[str, list[CellStats]] = defaultdict(list)
    for cell in cells:
        rest = {k: v for k, v in cell.context.items() if k != "batch_size"}
        groups[cell_key(rest)].append(cell)
    tables = []
    for key, members in groups.items():
        rest = json.loads(key)
        sizes = list(dict.fromkeys(c.context.get("batch_size") for c in members))
        header = [compare, *(f"batch {s}" if s is not None else "test accuracy" for s in sizes)]
        by = {(c.label, c.context.get("batch_size")): c for c in members}
        rows = [
            [label, *(cell_label(by[(label, s)]) if (label, s) in by else "—" for s in sizes)]
            for label in dict.fromkeys(c.label for c in members)
        ]
        where = ", ".join(f"{k}={v}" for k, v in rest.items())
        title = "Test accuracy: mean [95% t-interval] at the selected lr"
        if adaptive:
            title += " (chosen on tuning seeds), over evaluation seeds"
        title += f" ({where})" if where else ""
        tables.append(Table(title, header, rows))
    return tables


def comparison_table(comparisons: list[Comparison]) -> Table:
    header = [
        "context",
        "baseline - alternative",
        "points",
        "95% CI (unadjusted)",
        "Holm-adjusted CI",
        "p (unadjusted)",
        "Holm p",
        "d_z",
        "seeds",
    ]
    rows = [
        [
            ", ".join(f"{k}={v}" for k, v in c.context.items()) or "—",
            f"{c.baseline} - {c.alternative}",
            points(c.difference) if c.difference is not None else "—",
            unadjusted(c).removeprefix("95% CI "),
            adjusted(c).removeprefix("Holm-adjusted CI "),
            f"{c.p_value:.2g}" if c.p_value is not None else "—",
            f"{c.p_holm:.2g}" + (" *" if c.significant else "") if c.p_holm is not None else "—",
            f"{c.effect_size:.1f}" if c.effect_size is not None else "—",
            str(c.seeds),
        ]
        for c in comparisons
    ]
    title = (
        "Paired comparisons (same seed = same data order): the unadjusted 95% t-interval goes "
        "with the unadjusted p, the Holm-adjusted interval (the level Holm tested each "
        "comparison at) with the Holm p: each excludes 0 exactly when its p < 0.05"
    )
    return Table(title, header, rows)


def _gaps(cells: list[CellStats], study: StudyInput, baseline: str):
    """Gap records of the baseline's runs at each cell's selected lr: by cell key and seed (for
    the verdict), and by batch size (for the figure)."""
    by_cell: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    by_size: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    keys = {cell_key(c.summary.cell): c for c in cells}
    for record in study.records:
        if record.get("role") == TUNE:
            continue  # tuning seeds chose the lr; the cell's numbers are its evaluation seeds'
        gap = study.diagnostics.get(record["run_id"], {}).get("gap")
        cell = keys.get(cell_key(full_cell(record)))
        if gap is None or cell is None or record["config"]["lr"] != cell.summary.selected_lr:
            continue
        by_cell[cell_key(cell.summary.cell)][record["config"]["seed"]] = gap
        if cell.label == baseline:
            for kind in ("running", "precise", "batch"):
                by_size[record["config"]["batch_size"]][kind].append(gap[f"{kind}_acc"])
    return dict(by_cell), dict(by_size)


def build_report(study: StudyInput) -> Report:
    """Analyse ``study`` and lay out its report."""
    compare, baseline = compared(study.spec)
    cells = cell_statistics(study.records, compare)
    comparisons = compare_cells(cells, baseline)
    gaps_by_cell, gaps_by_size = _gaps(cells, study, baseline)
    design = design_of(study.spec, study.records)
    assessed: list[AssessedComparison] = []
    if design is None:
        result = verdict(cells, comparisons, compare, baseline, gaps=gaps_by_cell)
    else:
        # The adaptive protocol judges its comparisons sequentially, over evaluation seeds.
        assessed = assess_study(study.records, design, baseline, compare)
        design = replace(design, comparisons=max(1, len(assessed)))
        result = adaptive_verdict(
            cells, assessed, design, study.records, compare, baseline, gaps=gaps_by_cell
        )
    if compare == "norm" and _from_keras(study.records):
        result = replace(result, recommendation=_in_keras_terms(result, study.records))
    noise = [d["noise"] for d in study.diagnostics.values() if "noise" in d]
    figure_list = [
        figures.accuracy_vs_batch(cells, compare),
        figures.learning_curves(cells, study.records, study.curves),
        figures.statistics_gap(gaps_by_size),
        figures.batch_noise(noise),
        figures.lr_sensitivity(cells, compare),
        figures.stability(study.records, study.diagnostics, compare),
    ]
    tables = main_tables(cells, compare, adaptive=design is not None)
    protocol = _protocol(study.spec, adaptive=design is not None)
    if design is not None:
        figure_list.insert(0, intervals_figure(assessed, design))
        tables.append(assessed_table(assessed, design))
        study_keys = study.spec.get("study") or {}
        protocol += protocol_lines(study_keys, design, study.records, study.legs, assessed)
    elif comparisons:
        tables.append(comparison_table(comparisons))
    summaries = [cell.summary for cell in cells]
    extra = [statistics_gap_table(summaries, _batch_statistics_norms(study.records))]
    extra.append(lr_range_table(summaries))
    tables += [table for table in extra if table is not None]
    question = (
        f"Does {compare} = {baseline} hinder training here, and which {compare} should be used "
        "instead?"
    )
    return Report(
        title=study.name,
        question=question,
        verdict=result,
        tables=tables,
        figures=figure_list,
        notes=_notes(cells, study.spec),
        protocol=protocol,
        runs=_runs(study, summaries),
        reproduction=study,
    )


def _from_keras(records: list[dict[str, Any]]) -> bool:
    return any(r["config"].get("model_format") == "keras" for r in records)


def _in_keras_terms(result: Verdict, records: list[dict[str, Any]]) -> str:
    """The recommendation with the Keras layer of each norm it recommends (the model came from
    Keras): what the user writes in place of each ``BatchNormalization``."""
    if not result.switch_to:
        return result.recommendation
    options = {r["config"].get("norm"): r["config"].get("norm_options") or {} for r in records}
    parts = []
    for norm in result.switch_to:
        layer = keras_layer(norm, options.get(norm))
        if layer is None:
            parts.append(f"{norm} has no built-in Keras layer (normlab's `{norm}`)")
        elif not layer:
            parts.append(f"{norm}: remove each `BatchNormalization()`")
        else:
            parts.append(f"{norm}: `{layer}` in place of each `BatchNormalization()`")
    return f"{result.recommendation} In Keras: {'; '.join(parts)}."


def _notes(cells: list[CellStats], spec: dict[str, Any]) -> list[str]:
    notes = []
    edge = [c for c in cells if c.summary.lr_at_grid_edge]
    if edge:
        extend = spec["lr"].get("extend", 2)
        listed = "; ".join(
            f"{', '.join(f'{k}={v}' for k, v in c.summary.cell.items())} (lr {c.summary.selected_lr:g})"
            for c in edge
        )
        notes.append(
            f"`*` {len(edge)} of {len(cells)} cells still select an lr at the edge of the grid "
            f"they tried ({f'after extending it by up to {extend} values per side' if extend else 'grid extension off: [lr] extend = 0'}): {listed}. Their "
            "best lr may lie outside; read their numbers as lower bounds."
        )
    spread = [c for c in cells if c.lr_test_spread is not None]
    if spread:
        worst = max(spread, key=lambda c: c.lr_test_spread)
        notes.append(
            f"LR-selection honesty: across the lrs whose val mean is within one val std of the "
            f"selected one, test accuracy moves by up to {points(worst.lr_test_spread)} points "
            f"({', '.join(f'{k}={v}' for k, v in worst.summary.cell.items())}); in "
            f"{len(spread)} of {len(cells)} cells more than one lr is that close."
        )
    return notes


def _protocol(spec: dict[str, Any], adaptive: bool = False) -> list[str]:
    base, lr = spec["base"], spec["lr"]
    budget = (
        f"{base['steps']} optimizer steps per run"
        if base.get("steps")
        else f"{base['epochs']} epochs per run (equal examples across batch sizes)"
    )
    lr_text = {
        "fixed": f"fixed at {lr.get('base_lr')}",
        "scaled": f"{lr.get('rule')} scaling from {lr.get('base_lr')} at batch {lr.get('base_batch_size')}",
    }.get(
        lr["mode"], "tuned per cell on validation accuracy over a log grid, extended past an edge"
    )
    if adaptive and lr["mode"] == "tuned":
        lr_text = (
            "tuned per cell on its tuning seeds' validation accuracy over a log grid, extended "
            "past an edge"
        )
    lines = [
        f"Data: `{base['dataset']}`, fixed stratified train / val / test split; val selects, "
        "test reports.",
        f"Model: `{base.get('model', 'resnet')}`; {budget}; optimizer {base['optimizer']}.",
        f"Learning rate: {lr_text}.",
    ]
    if adaptive:
        return lines  # seeds and statistics: the adaptive protocol's lines follow
    return lines + [
        f"Seeds: {len(spec['seeds'])} (seed s gives every cell the same data order: paired).",
        "Statistics: paired t-tests by seed (an exact sign-flip test when the differences are "
        "identical; none below 3 seeds), Holm-corrected; 95% t-intervals, and Holm-adjusted ones "
        "in the verdict; a run that diverged at a cell's selected lr counts as accuracy 0; "
        "remedies that keep BN must be shown equivalent (two one-sided tests within ±1 point).",
    ]


def _batch_statistics_norms(records: list[dict[str, Any]]) -> set[str]:
    """Norms whose runs recorded an inference-statistics gap, or whose test accuracy with batch
    statistics differs from eval mode (the norms that use batch statistics in training)."""
    return {
        record["config"].get("norm", "")
        for record in records
        if (record.get("diagnostics") or {}).get("gap")
        or (
            record.get("test_acc") is not None
            and record.get("test_acc_batch_stats") is not None
            and record["test_acc"] != record["test_acc_batch_stats"]
        )
    }


def _runs(study: StudyInput, summaries: list[CellSummary]) -> list[str]:
    counts: dict[str, int] = defaultdict(int)
    for record in study.records:
        counts[record["status"]] += 1
    lines = [", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + "."]
    unstable = [s for s in summaries if s.diverged_total or s.collapsed_total]
    if unstable:
        listed = "; ".join(
            f"{', '.join(f'{k}={v}' for k, v in s.cell.items())}: {s.diverged_total} diverged, "
            f"{s.collapsed_total} collapsed"
            for s in unstable
        )
        lines.append(
            "Unstable runs over the whole lr grid, per cell (collapsed: finished at chance, "
            f"final train loss about ln(classes)): {listed}."
        )
    if study.legs:
        lines.append(
            f"Wall time: {sum(study.legs):.0f} s over {len(study.legs)} invocation(s) "
            f"({', '.join(f'{leg:.0f} s' for leg in study.legs)})."
        )
    if study.estimate is not None:
        lines.append(_time_estimate(study.estimate, study.legs, len(study.records)))
    lines.append("Every run, with its config and per-epoch curves: `normlab.db` (SQLite).")
    return lines


def _time_estimate(estimate: dict[str, Any], legs: list[float], runs: int) -> str:
    """``Time: estimated 6 min, took 11 min (1.8x) ...``: the calibrated estimate made before
    training beside the wall time of the invocations it covers."""
    took = sum(legs[estimate.get("legs_before", 0) :])
    text = f"Time: estimated {_minutes(estimate['wall_seconds'])}"
    if took > 0:
        text += f", took {_minutes(took)} ({took / max(estimate['wall_seconds'], 1e-9):.1f}x)"
    text += (
        f"; the estimate was calibrated before training {estimate['runs']} run(s) on "
        f"{estimate['workers']} worker(s), on the machine as it was loaded then, and counts "
        "training and evaluation, not the workers' start-up or the diagnostics"
    )
    added = runs - estimate.get("planned", runs)
    if added > 0:
        text += f"; the {added} run(s) the lr grid extension added later are not in it"
    return text + "."


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
