"""The adaptive parts of a report: protocol lines, the comparison table with statuses and
detectable effects, the interval figure, the budget, the reproduction spec's [study] keys."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from synthetic_records import adaptive_records  # noqa: E402

from normlab.analysis.statistics import Interval  # noqa: E402
from normlab.report.adaptive import (  # noqa: E402
    assessed_table,
    budget_seconds,
    intervals_figure,
    protocol_lines,
)
from normlab.report.spec_toml import spec_toml  # noqa: E402

DESIGN = SimpleNamespace(
    first_round=3, round_seeds=2, max_seeds=20, alpha=0.05, margin=0.01, comparisons=2
)
MEANS = {("bn", 4): 0.80, ("gn", 4): 0.90, ("bn", 128): 0.95, ("gn", 128): 0.95}


def item(batch, mean, low, high, status, p, seeds=5, to_resolve=None):
    interval = Interval(low, high) if low is not None else None
    return SimpleNamespace(
        context={"batch_size": batch},
        baseline="bn",
        alternative="gn",
        assessment=SimpleNamespace(
            seeds=seeds,
            mean=mean,
            interval=interval,
            status=status,
            p_value=p,
            detectable=None if interval is None else (high - low) / 2,
            seeds_to_resolve=to_resolve,
        ),
    )


ASSESSED = [
    item(4, -0.10, -0.14, -0.06, "worse", 0.002),
    item(128, 0.003, -0.009, 0.015, "unresolved", 1.0, seeds=7, to_resolve=11),
]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("45s", 45), ("2h", 7200), ("1h30m", 5400), (None, None), ("soon", None)],
)
def test_budget_seconds(text, seconds):
    assert budget_seconds(text) == seconds


def test_the_table_gives_each_comparison_its_status_interval_and_detectable_effect():
    records = adaptive_records(MEANS, rounds=(3, 2, 2))
    table = assessed_table(ASSESSED, DESIGN, records, "norm")
    assert table.header[3:7] == ["repeated 95% CI", "adjusted p", "status", "detectable (± points)"]
    worse, open_ = table.rows
    assert worse[2:] == ["-10.0", "-14.0 to -6.0", "0.002", "bn worse", "4.0", "5", "3", "—"]
    assert open_[5:] == ["unresolved", "1.2", "7", "3", "11"]
    assert "excludes 0 exactly when the adjusted p < 0.05" in table.title
    assert table.title.startswith("Paired comparisons")  # the terminal leaves it out


def test_protocol_lines_describe_seeds_rounds_resolution_and_budget():
    records = adaptive_records(MEANS, rounds=(3, 2))
    study = {"protocol": "adaptive", "tuning_seeds": 2, "budget": "30m"}
    lines = protocol_lines(
        study, DESIGN, "Method X (Someone 1999).", records, [900.0, 180.0], ASSESSED, "norm"
    )
    text = " ".join(lines)
    assert "Tuning seeds (2 per cell, seeds 1000 to 1001)" in text
    assert "first round of 3 evaluation seeds, then 2 more per round" in text
    assert "up to 20 seeds; this study ran 2 round(s) and 5 to 7 evaluation seeds" in text
    assert "inside ±1.0 points" in text and "Sequential error control: Method X" in text
    # 1,080 s of a 1,800 s budget; 4 cells x 3 lrs x 2 tuning seeds, 4 cells x 5 evaluation.
    assert "Budget: 30m of wall time for the whole study; used 18 min (60%)" in text
    assert "for 24 tuning and 20 evaluation run(s)" in text
    unbudgeted = protocol_lines({}, DESIGN, "M.", records, [60.0], ASSESSED, "norm")
    assert "Budget: none" in unbudgeted[-1]


def test_the_figure_draws_every_interval_and_says_why_when_there_is_none():
    figure = intervals_figure(ASSESSED, DESIGN)
    assert figure.png.startswith(b"\x89PNG") and "±1.0 points" in figure.caption
    empty = intervals_figure([item(4, -0.1, None, None, "unresolved", None, seeds=2)], DESIGN)
    assert empty.png is None and "3 evaluation seeds" in empty.missing


def test_the_reproduction_spec_keeps_the_protocol_keys():
    spec = {
        "name": "mine",
        "seeds": [0, 1, 2],
        "study": {"protocol": "adaptive", "tuning_seeds": 2, "margin": 0.01, "budget": None},
        "base": {"dataset": "digits"},
        "lr": {"mode": "fixed", "base_lr": 0.1},
    }
    text = spec_toml(spec)
    study = text.split("[run]")[0]
    assert 'protocol = "adaptive"' in study and "tuning_seeds = 2" in study
    assert "margin = 0.01" in study and "budget" not in study
