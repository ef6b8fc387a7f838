"""The adaptive parts of a report: protocol lines, the comparison table with statuses and
detectable effects, the interval figure, the budget, the reproduction spec's [study] keys."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from synthetic_records import adaptive_records  # noqa: E402

from normlab.analysis.adaptive import AssessedComparison  # noqa: E402
from normlab.analysis.sequential import Assessment, SequentialDesign  # noqa: E402
from normlab.analysis.statistics import Interval  # noqa: E402
from normlab.report.adaptive import (  # noqa: E402
    assessed_table,
    budget_seconds,
    intervals_figure,
    protocol_lines,
)
from normlab.report.spec_toml import spec_toml  # noqa: E402

DESIGN = SequentialDesign(first_round=3, round_seeds=2, comparisons=2)
MEANS = {("bn", 4): 0.80, ("gn", 4): 0.90, ("bn", 128): 0.95, ("gn", 128): 0.95}


def item(batch, mean, low, high, status, p, seeds=5, to_resolve=None, rounds=2):
    """A comparison as :func:`normlab.analysis.adaptive.assess_study` returns one, with chosen
    numbers (the layout is under test here, not the statistics)."""
    interval = Interval(low, high) if low is not None else None
    detectable = None if interval is None else (high - low) / 2
    assessment = Assessment(seeds, mean, interval, status, p, detectable, to_resolve)
    return AssessedComparison({"batch_size": batch}, "bn", "gn", assessment, rounds)


ASSESSED = [
    item(4, -0.10, -0.14, -0.06, "worse", 0.002),
    item(128, 0.003, -0.009, 0.015, "unresolved", 1.0, seeds=7, to_resolve=11, rounds=3),
]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("45s", 45), ("2h", 7200), ("1h30m", 5400), (None, None), ("soon", None)],
)
def test_budget_seconds(text, seconds):
    assert budget_seconds(text) == seconds


def test_the_table_gives_each_comparison_its_status_interval_and_detectable_effect():
    table = assessed_table(ASSESSED, DESIGN)
    assert table.header[3:7] == ["repeated 95% CI", "adjusted p", "status", "detectable (± points)"]
    worse, open_ = table.rows
    assert worse[2:] == ["-10.0", "-14.0 to -6.0", "0.002", "bn worse", "4.0", "5", "2", "—"]
    assert open_[5:] == ["unresolved", "1.2", "7", "3", "11"]
    assert "excludes 0 exactly when the adjusted p < 0.05" in table.title
    assert table.title.startswith("Paired comparisons")  # the terminal leaves it out


def test_protocol_lines_describe_seeds_rounds_resolution_and_budget():
    records = adaptive_records(MEANS, rounds=(3, 2))
    study = {"protocol": "adaptive", "tuning_seeds": 2, "budget": "30m"}
    lines = protocol_lines(study, DESIGN, records, [900.0, 180.0], ASSESSED)
    text = " ".join(lines)
    assert "Tuning seeds (2 per cell, seeds 1000 to 1001)" in text
    assert "first round of 3 evaluation seeds, then 2 more per round" in text
    assert "up to 20 seeds; this study ran 2 to 3 round(s) and 5 to 7 evaluation seeds" in text
    assert "inside ±1.0 points" in text and "looks of 3, 5, 7" in text
    # 1,080 s of a 1,800 s budget; 4 cells x 3 lrs x 2 tuning seeds, 4 cells x 5 evaluation.
    assert "Budget: 30m of wall time for the whole study; used 18 min (60%)" in text
    assert "for 24 tuning and 20 evaluation run(s)" in text
    unbudgeted = protocol_lines({}, DESIGN, records, [60.0], ASSESSED)
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


def adaptive_study(**changes):
    from normlab.report.document import StudyInput

    records = adaptive_records(
        {("bn", 4): 0.80, ("gn", 4): 0.90, ("bn", 64): 0.95, ("gn", 64): 0.951},
        rounds=(3, 3),
        noise=0.002,
    )
    spec = {
        "name": "adaptive",
        "seeds": [0, 1, 2],
        "study": {"protocol": "adaptive", "tuning_seeds": 2, "budget": "30m", "margin": 0.01},
        "factors": {"norm": ["bn", "gn"], "batch_size": [4, 64]},
        "base": {"dataset": "digits", "epochs": 2, "optimizer": "sgd"},
        "lr": {"mode": "tuned", "grid": [0.01, 0.03, 0.1]},
    }
    values = dict(
        name="adaptive", spec=spec, records=records, legs=[600.0], spec_text=spec_toml(spec)
    )
    return StudyInput(**{**values, **changes})


def test_an_adaptive_study_reports_its_protocol_statuses_and_figure(tmp_path):
    from normlab.report.markdown import render_markdown
    from normlab.report.write import terminal_summary, write_report

    report = write_report(adaptive_study(), tmp_path)
    paragraph = report.verdict.paragraph
    assert "significantly worse than gn" in paragraph and "repeated 95% CI" in paragraph
    assert "equivalent to gn within ±1.0 points" in paragraph
    assert "Holm" not in paragraph  # no fixed-protocol test beside the sequential one
    (table,) = [t for t in report.tables if t.title.startswith("Paired comparisons")]
    assert [row[5] for row in table.rows] == ["bn worse", "equivalent"]
    assert report.figures[0].name == "adaptive_intervals" and report.figures[0].png
    protocol = " ".join(report.protocol)
    assert "Protocol: adaptive" in protocol and "Pocock-type alpha spending" in protocol
    assert "used 10 min (33%)" in protocol and "Holm-corrected" not in protocol
    markdown = render_markdown(report)
    assert "## Protocol" in markdown and "Rounds: a first round of 3" in markdown
    assert (tmp_path / "figures" / "adaptive_intervals.png").exists()
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == sum(f.png is not None for f in report.figures)
    # The terminal prints the verdict and the accuracy tables, over evaluation seeds only.
    _, tables = terminal_summary(report)
    assert all(not t.title.startswith("Paired") for t in tables)
    assert "0.80" in tables[0].rows[0][1] and "0.60" not in tables[0].rows[0][1]
    assert "(chosen on tuning seeds), over evaluation seeds" in tables[0].title


def test_a_study_whose_evaluation_has_not_started_reports_no_claim():
    study = adaptive_study()
    from normlab.report.document import build_report

    tuning_only = [r for r in study.records if r["role"] == "tune"]
    report = build_report(adaptive_study(records=tuning_only))
    assert "No evaluation seeds yet" in report.verdict.paragraph
    assert report.tables[0].rows[0][1] == "lr selected; no evaluation run finished yet"
    assert report.figures[0].png is None


def test_export_carries_role_and_round():
    from normlab.study.export import run_table

    table = run_table(adaptive_records(MEANS, rounds=(3,)))
    assert {"role", "round"} <= set(table.columns)
    roles = {(row["role"], row["round"]) for row in table.rows}
    assert roles == {("tune", 0), ("eval", 1)}


def test_the_table_projects_nothing_for_a_comparison_without_an_interval():
    # Two seeds (round 1 interrupted): assess() has no interval and no spread to project from.
    from normlab.analysis.sequential import assess

    assessment = assess([-0.1, -0.12], DESIGN)
    assert assessment.interval is None
    table = assessed_table(
        [AssessedComparison({"batch_size": 4}, "bn", "gn", assessment, 1)], DESIGN
    )
    (row,) = table.rows
    assert row[-1] == f"first look at {DESIGN.first_round}"


def test_the_reproduction_spec_of_an_adaptive_study_loads_as_the_same_study():
    import tomllib

    from normlab.study import spec_from_dict

    spec = spec_from_dict(
        {
            "study": {"protocol": "adaptive", "tuning_seeds": 1, "budget": "30m"},
            "run": {"dataset": "synthetic", "epochs": 1},
            "factors": {"norm": ["bn", "gn"], "batch_size": [4, 32]},
        }
    )
    text = spec_toml(spec.to_dict())
    keys = [line.split(" = ")[0] for line in text.split("[run]")[0].splitlines()]
    assert "seeds" not in keys and "tuning_seeds" in keys  # adaptive seeds come in rounds
    assert spec_from_dict(tomllib.loads(text), text=text).study_id == spec.study_id
