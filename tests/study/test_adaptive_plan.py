"""The adaptive dry run: rounds, runs, estimated times inside the budget, detectable effects."""

from __future__ import annotations

from dataclasses import replace

from normlab.study import spec_from_dict
from normlab.study.adaptive_plan import ASSUMED_SD, comparisons, dry_run_lines
from normlab.study.dryrun import estimate_time
from normlab.study.packrule import PackChoice, rule_key
from normlab.study.plan import check_study
from normlab.study.protocol import duration_text

SPEC = {
    "study": {"protocol": "adaptive", "tuning_seeds": 1, "max_seeds": 9, "budget": "{budget}"},
    "run": {
        "dataset": "synthetic",
        "dataset_options": {"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
        "depth": 8,
        "widths": [4, 8, 8],
        "epochs": 1,
    },
    "factors": {"norm": ["bn", "gn", "ln"], "batch_size": [8, 32]},
    "lr": {"grid": [0.03, 0.1], "extend": 0},
}


def plan(budget: str) -> tuple[list[str], object]:
    values = {**SPEC, "study": {**SPEC["study"], "budget": budget}}
    spec = spec_from_dict(values)
    runs, dataset = check_study(spec)
    estimate = estimate_time(runs, dataset, workers=1, pack="off")
    return dry_run_lines(spec, runs, dataset, estimate, "off", 1), spec


def test_the_plan_lists_every_look_with_its_detectable_effect():
    lines, spec = plan("1h")
    assert comparisons(spec) == 4  # gn and ln against bn at two batch sizes
    design = spec.adaptive.design(comparisons=4)
    rows = [line.split() for line in lines if line.lstrip().startswith(("tuning", "round"))]
    assert [row[0] for row in rows] == ["tuning"] + ["round"] * len(design.looks())
    previous = 0
    for row, look in zip(rows[1:], design.looks(), strict=True):
        # round, number, seeds at the look, runs: the new seeds of each of the 6 cells
        assert (int(row[2]), int(row[3])) == (look, 6 * (look - previous))
        assert f"{design.detectable(look, ASSUMED_SD) * 100:.2f}" in row
        previous = look
    assert all(row[-1] == "fits" for row in rows)
    assert "Within 1h: every round" in lines[-2] and lines[-1].startswith("Dry run")


def test_a_small_budget_marks_the_rounds_it_cannot_start():
    lines, _ = plan("1s")
    rows = [line.split() for line in lines if line.lstrip().startswith(("tuning", "round"))]
    assert rows[-1][-1] == "over"
    assert "refused before training" in lines[-2]


def test_the_tuning_row_cuts_units_at_the_study_pack_sizes():
    # Every configuration measured as training alone; a pack of 2 is then timed (falsely) as
    # costing what one run alone does. The tuning row (one worker: the sum of its units) must
    # price the runs alone, as the estimate does, not cut them into the fixed rule's packs.
    values = {**SPEC, "study": {**SPEC["study"], "budget": "1h"}}
    spec = spec_from_dict(values)
    runs, dataset = check_study(spec)
    shape = tuple(dataset.input_shape)
    alone = PackChoice(1, "measured", 0.9, ((2, 0.9),), reason="packed at best 0.90x")
    recorded = {rule_key(run.config, shape): alone for run in runs}
    estimate = estimate_time(runs, dataset, workers=1, pack="auto", recorded=recorded)
    timings = dict(estimate.timings)
    timings.update({(*key[:-1], 2): timing for key, timing in estimate.timings.items()})
    estimate = replace(estimate, timings=timings)
    assert estimate.units == len(runs)
    lines = dry_run_lines(spec, runs, dataset, estimate, "auto", 1)
    (tuning,) = [line.split() for line in lines if line.lstrip().startswith("tuning")]
    assert tuning[3] == duration_text(estimate.wall_seconds)


def fake_plan(monkeypatch, budget: str, calibration: float) -> list[str]:
    """The dry run of SPEC with every run costing 1 s (one worker) and ``calibration`` seconds
    of calibration, without timing anything (the fixed-protocol lines are left out)."""
    from types import SimpleNamespace

    from normlab.study import adaptive_plan

    monkeypatch.setattr(adaptive_plan, "describe_plan", lambda *args: ["Dry run"])
    values = {**SPEC, "study": {**SPEC["study"], "budget": budget}}
    spec = spec_from_dict(values)
    runs, dataset = check_study(spec)
    estimate = SimpleNamespace(
        unit_seconds=lambda unit: 1.0 * len(unit), pack_sizes={}, calibration_seconds=calibration
    )
    return dry_run_lines(spec, runs, dataset, estimate, "off", 1)


def rows_of(lines: list[str]) -> dict[str, str]:
    found = [line.split() for line in lines if line.lstrip().startswith(("tuning", "round"))]
    return {" ".join(row[:2]) if row[0] == "round" else row[0]: row[-1] for row in found}


def test_the_dry_run_counts_the_calibration_the_budget_spends_first(monkeypatch):
    # 12 tuning runs + 18 round-1 runs at 1 s: 30 s, 36 s with the headroom. The runner's
    # budget counts the calibration as spent (rounds.check_budget), so with 30 s of calibration
    # a 60 s budget leaves 30 s: the study is refused, and the dry run must not say it fits.
    lines = fake_plan(monkeypatch, "60s", calibration=30.0)
    assert rows_of(lines)["round 1"] != "fits"
    assert "refused before training" in lines[-2]


def test_the_dry_run_marks_the_rounds_the_runner_would_start(monkeypatch):
    # No calibration time; each later round adds 3 seeds x 6 cells = 18 s, and the runner starts
    # a round when its own prediction x 1.2 fits in what is left (budget.Budget.allows). With
    # 55 s: tuning and round 1 (30 s; 36 s with the headroom) fit, 25 s are left and round 2
    # (21.6 s with the headroom) starts; round 3 then has 7 s left and does not.
    rows = rows_of(fake_plan(monkeypatch, "55s", calibration=0.0))
    assert (rows["round 1"], rows["round 2"], rows["round 3"]) == ("fits", "fits", "over")


def test_without_a_calibration_the_dry_run_does_not_promise_a_refusal(monkeypatch):
    # On a GPU or Ray nothing is calibrated: the runner cannot price tuning and round 1 and
    # does not refuse (rounds.check_budget), so the dry run must not say it would.
    from normlab.study import adaptive_plan

    monkeypatch.setattr(adaptive_plan, "describe_plan", lambda *args: ["Dry run"])
    spec = spec_from_dict({**SPEC, "study": {**SPEC["study"], "budget": "1h"}})
    runs, dataset = check_study(spec)
    lines = dry_run_lines(spec, runs, dataset, None, "off", 1)
    assert not any("refused" in line for line in lines)
