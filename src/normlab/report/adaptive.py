"""The report of an adaptive study: its protocol section, the comparison table with each
comparison's status and detectable effect, and the figure of repeated intervals against the
equivalence band. Pure functions of the stored spec dict, the records and the assessments.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from normlab.analysis.adaptive import AssessedComparison  # noqa: E402
from normlab.analysis.caveats import context_where  # noqa: E402
from normlab.analysis.sequential import SequentialDesign  # noqa: E402
from normlab.analysis.summary import EVALUATE, TUNE  # noqa: E402
from normlab.analysis.verdict_adaptive import duration  # noqa: E402
from normlab.analysis.wording import points  # noqa: E402

from .figures import STYLE, Figure, png_bytes  # noqa: E402
from .tables import Table  # noqa: E402

STATUS_COLOURS = {
    "worse": "tab:red",
    "better": "tab:green",
    "equivalent": "tab:blue",
    "unresolved": "tab:gray",
}
_UNITS = {"h": 3600, "m": 60, "s": 1}


def budget_seconds(text: Any) -> float | None:
    """Seconds of a ``[study] budget`` (``"30m"``, ``"45s"``, ``"2h"``, ``"1h30m"``, as
    docs/SPECS.md spells it); None for no budget or a form this report cannot read."""
    if not isinstance(text, str) or not re.fullmatch(r"(\d+(\.\d+)?[hms])+", text.strip()):
        return None
    return float(sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text)))


SPENDING = {
    "pocock": "Pocock-type alpha spending (f(t) = a ln(1 + (e - 1) t))",
    "obrien-fleming": "O'Brien-Fleming-type alpha spending (f(t) = 2 - 2 Phi(z_(1-a/2) / sqrt(t)))",
}
"""How each spending function of :mod:`normlab.analysis.sequential` reads in the report."""


def design_of(spec: dict[str, Any], records: list[dict[str, Any]]) -> SequentialDesign | None:
    """The sequential design of an adaptive study, rebuilt from the stored spec's ``study``
    keys (``first_round``, ``round_seeds``, ``max_seeds``, ``alpha``, ``margin`` ...; the
    design's defaults for any not stored); None for a fixed-protocol study. A study is adaptive
    when its spec says ``protocol = "adaptive"`` or its runs carry tuning or evaluation roles."""
    study = spec.get("study") or {}
    roles = any(r.get("role") in (TUNE, EVALUATE) for r in records)
    if study.get("protocol", "adaptive" if roles else "fixed") != "adaptive":
        return None
    names = {f.name for f in fields(SequentialDesign)} - {"comparisons"}
    return SequentialDesign(**{k: v for k, v in study.items() if k in names and v is not None})


def method(design: SequentialDesign) -> str:
    """The sequential method in one sentence (``analysis/sequential.py``'s docstring states it
    with its references)."""
    looks = ", ".join(str(n) for n in design.looks())
    return (
        f"repeated confidence intervals (Jennison & Turnbull 1989) at the looks of {looks} "
        f"evaluation seeds, with {SPENDING.get(design.spending, design.spending)} over the looks "
        "(Lan & DeMets 1983; union bound), Bonferroni over the study's comparisons, Student t "
        "quantiles, and a spread floored at one test example (`analysis/sequential.py`)."
    )


def protocol_lines(
    study: dict[str, Any],
    design: SequentialDesign,
    records: list[dict[str, Any]],
    legs: list[float],
    assessed: list[AssessedComparison],
) -> list[str]:
    """The protocol section's lines about the adaptive protocol (``study``: the spec's
    ``[study]`` table as stored)."""
    tuning = study.get("tuning_seeds", 2)
    seeds_per_context = sorted({a.assessment.seeds for a in assessed})
    rounds = sorted({a.rounds for a in assessed})
    ran = (
        f"; this study ran {_span(rounds)} round(s) and {_span(seeds_per_context)} evaluation "
        "seeds per context"
        if assessed
        else "; no comparison has evaluation seeds yet"
    )
    lines = [
        f"Protocol: adaptive. Tuning seeds ({tuning} per cell, seeds 1000 to {999 + tuning}) "
        "select each cell's learning rate on validation accuracy; evaluation seeds (0, 1, ...), "
        "disjoint from them and trained afresh at the selected lr, are the only ones compared "
        "(evaluation seed s gives every cell the same data order: paired).",
        f"Rounds: a first round of {design.first_round} evaluation seeds, then "
        f"{design.round_seeds} more per round, only in contexts with an unresolved comparison, "
        f"up to {design.max_seeds} seeds{ran}.",
        f"Resolution: a comparison is significant when its repeated {100 * (1 - design.alpha):g}% "
        "confidence interval excludes 0 (its adjusted p is then below "
        f"{design.alpha:g}), equivalent when the interval lies inside ±{points(design.margin)} "
        "points (two one-sided tests at the same level), otherwise unresolved; its detectable "
        "effect is the interval's half-width.",
        f"Sequential error control: {method(design)} The family-wise error rate {design.alpha:g} holds "
        f"over every look and the study's {len(assessed)} comparison(s), however the rounds "
        "stopped.",
        _budget_line(study.get("budget"), legs, records),
    ]
    return lines


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]} to {values[-1]}"


def _budget_line(budget: Any, legs: list[float], records: list[dict[str, Any]]) -> str:
    used = sum(legs)
    runs = {role: sum(r.get("role") == role for r in records) for role in (TUNE, EVALUATE)}
    counts = f"{runs[TUNE]} tuning and {runs[EVALUATE]} evaluation run(s)"
    limit = budget_seconds(budget)
    if limit is None:
        cap = "none (rounds run until every comparison resolves or reaches max_seeds)"
        return f"Budget: {cap}; used {duration(used)} of wall time for {counts}."
    return (
        f"Budget: {budget} of wall time for the whole study; used {duration(used)} "
        f"({100 * used / limit:.0f}%) for {counts}."
    )


def assessed_table(assessed: list[AssessedComparison], design: SequentialDesign) -> Table:
    """One row per comparison: difference, repeated interval and adjusted p (the interval
    excludes 0 exactly when p < alpha), status, detectable effect, seeds, rounds, and the seeds
    the design projects would resolve an open one."""
    header = [
        "context",
        "baseline - alternative",
        "points",
        f"repeated {100 * (1 - design.alpha):g}% CI",
        "adjusted p",
        "status",
        "detectable (± points)",
        "seeds",
        "rounds",
        "seeds to resolve",
    ]
    rows = []
    for item in assessed:
        a = item.assessment
        to_resolve = "—"
        if a.status == "unresolved" and a.interval is None:
            # No interval yet: no spread at a look to project from (the verdict says so too).
            to_resolve = (
                f"first look at {design.first_round}" if a.seeds < design.first_round else "—"
            )
        elif a.status == "unresolved":
            to_resolve = (
                str(a.seeds_to_resolve)
                if a.seeds_to_resolve is not None
                else f"not by {design.max_seeds}"
            )
        rows.append(
            [
                ", ".join(f"{k}={v}" for k, v in item.context.items()) or "—",
                f"{item.baseline} - {item.alternative}",
                points(a.mean) if a.mean is not None else "—",
                f"{points(a.interval.low)} to {points(a.interval.high)}" if a.interval else "—",
                f"{a.p_value:.2g}" if a.p_value is not None else "—",
                _status(a.status, item.baseline),
                points(a.detectable) if a.detectable is not None else "—",
                str(a.seeds),
                str(item.rounds),
                to_resolve,
            ]
        )
    title = (
        "Paired comparisons on evaluation seeds (same seed = same data order): the repeated "
        f"interval holds over every look and all {len(assessed)} comparison(s) and excludes 0 "
        f"exactly when the adjusted p < {design.alpha:g}; equivalent: inside "
        f"±{points(design.margin)} points; detectable: the interval's half-width"
    )
    return Table(title, header, rows)


def _status(status: str, baseline: str) -> str:
    return {
        "worse": f"{baseline} worse",
        "better": f"{baseline} better",
    }.get(status, status)


def intervals_figure(assessed: list[AssessedComparison], design: SequentialDesign) -> Figure:
    """Each comparison's repeated interval (baseline - alternative, points) against the
    ±margin equivalence band and 0: a bar clear of 0 is significant, a bar inside the band
    equivalent, any other unresolved."""
    name, title = "adaptive_intervals", "Repeated intervals against the equivalence margin"
    shown = [a for a in assessed if a.assessment.interval is not None]
    if not shown:
        return Figure(
            name, title, "", missing="no comparison has 3 evaluation seeds yet (an interval)"
        )
    with plt.rc_context(STYLE):
        height = max(1.6, 0.35 * len(shown) + 0.8)
        figure, axis = plt.subplots(figsize=(6.4, height))
        margin = 100 * design.margin
        axis.axvspan(-margin, margin, color="tab:blue", alpha=0.12, lw=0)
        axis.axvline(0.0, color="0.3", lw=0.8)
        labels = []
        for row, item in enumerate(shown):
            a = item.assessment
            colour = STATUS_COLOURS.get(a.status, "tab:gray")
            low, high = 100 * a.interval.low, 100 * a.interval.high
            axis.plot([low, high], [row, row], color=colour, lw=3, solid_capstyle="butt")
            axis.plot([100 * a.mean], [row], "o", color=colour, markersize=4)
            where = context_where(item.context)
            labels.append(
                f"{item.baseline} - {item.alternative}" + (f" ({where})" if where else "")
            )
        axis.set_yticks(range(len(shown)), labels)
        axis.set_ylim(len(shown) - 0.5, -0.5)  # first comparison on top, half a row of margin
        axis.set_xlabel("difference in test accuracy (points)")
    caption = (
        f"Repeated {100 * (1 - design.alpha):g}% intervals of baseline - alternative over the "
        f"evaluation seeds; the band is ±{points(design.margin)} points. Red: baseline worse; "
        "green: better; blue: equivalent; grey: unresolved."
    )
    return Figure(name, title, caption, png_bytes(figure))
