"""The adaptive verdict says, per context and comparison, what the evaluation seeds resolved,
quoting the assessment's own repeated interval and adjusted p, and what more seeds would cost."""

import re
from dataclasses import replace

import pytest
from synthetic_records import adaptive_records

from normlab.analysis.adaptive import AssessedComparison, assess_study
from normlab.analysis.compare import cell_statistics
from normlab.analysis.sequential import Assessment, SequentialDesign
from normlab.analysis.statistics import Interval
from normlab.analysis.summary import cell_key
from normlab.analysis.verdict_adaptive import adaptive_verdict, duration, seconds_per_seed

DESIGN = SequentialDesign(comparisons=4)
MEANS = {
    ("bn", 4): 0.80,
    ("gn", 4): 0.90,
    ("ln", 4): 0.85,
    ("bn", 128): 0.95,
    ("gn", 128): 0.95,
    ("ln", 128): 0.949,
}
WALL = 30.0
"""Seconds of one evaluation run: one evaluation seed of a context (3 norms) costs 90 s."""


def assessment(mean, low, high, status, p=None, seeds=5, detectable=None, to_resolve=None):
    """An assessment as :func:`normlab.analysis.sequential.assess` returns one, with chosen
    numbers (the verdict's wording is under test here, not the statistics)."""
    return Assessment(
        seeds=seeds,
        mean=mean,
        interval=Interval(low, high) if low is not None else None,
        status=status,
        p_value=p,
        detectable=detectable if detectable is not None or low is None else (high - low) / 2,
        seeds_to_resolve=to_resolve,
    )


def assessed(batch, alternative, a, rounds=2):
    return AssessedComparison({"batch_size": batch}, "bn", alternative, a, rounds)


def study(items, means=MEANS, rounds=(3, 2), noise=0.004):
    records = adaptive_records(means, rounds=rounds, wall_time=WALL, noise=noise)
    cells = cell_statistics(records)
    return adaptive_verdict(cells, items, DESIGN, records, "norm", "bn")


def test_a_significant_deficit_quotes_its_repeated_interval_and_adjusted_p():
    result = study(
        [
            assessed(4, "gn", assessment(-0.10, -0.14, -0.06, "worse", p=0.002)),
            assessed(4, "ln", assessment(-0.05, -0.09, -0.01, "worse", p=0.03)),
            assessed(128, "gn", assessment(0.0, -0.006, 0.006, "equivalent", p=0.9)),
            assessed(128, "ln", assessment(0.001, -0.005, 0.007, "equivalent", p=0.8)),
        ]
    )
    text = result.paragraph
    # Alternative - baseline, negated from the assessment's baseline - alternative interval.
    assert (
        "At batch size 4 (5 evaluation seeds in 2 round(s)), bn is significantly worse than gn, "
        "10.0 points below it (gn - bn: repeated 95% CI 6.0 to 14.0, adjusted p = 0.002)"
    ) in text
    assert "significantly worse than ln, 5.0 points below it" in text
    assert (
        "equivalent to gn within ±1.0 points (bn - gn = 0.0 points, repeated 95% CI -0.6 to 0.6)"
        in text
    )
    assert result.recommendation.startswith("Recommendation: at batch size 4 use gn")
    assert "keep bn at batch size 128" in result.recommendation
    assert result.switch_to == ("gn",)
    assert "unresolved" not in text


def test_an_open_comparison_states_its_detectable_effect_and_the_time_to_resolve_it():
    result = study(
        [
            assessed(4, "gn", assessment(-0.012, -0.03, 0.006, "unresolved", p=0.4, to_resolve=11)),
            assessed(4, "ln", assessment(-0.004, -0.02, 0.012, "unresolved", p=1.0)),
            assessed(128, "gn", assessment(0.0, -0.006, 0.006, "equivalent", p=0.9)),
            assessed(128, "ln", assessment(0.001, -0.005, 0.007, "equivalent", p=0.8)),
        ]
    )
    text = result.paragraph
    assert "unresolved against gn (bn - gn = -1.2 points, repeated 95% CI -3.0 to 0.6" in text
    assert "the smallest difference 5 seeds could resolve is ±1.8 points" in text
    # 11 - 5 = 6 more seeds, each training the context's 3 cells for 30 s: 540 s = 9 min.
    assert "about 11 seeds would resolve it, 6 more: about 9 min of training" in text
    assert "it would not resolve by max_seeds = 20" in text  # ln: no projection
    # gn's projection is the context's time; ln's (none) is left out, and said.
    assert (
        "A larger budget would resolve 1 of them by max_seeds = 20, as the design projects "
        "(the other 1 not, at the spread seen): about 9 min more of training in 1 context(s)"
    ) in text
    assert "2 of 4 comparison(s) remain unresolved" in text
    assert "undecided at batch size 4" in result.recommendation
    assert result.switch_to == ()


def test_a_larger_budget_buys_the_sum_over_open_contexts():
    result = study(
        [
            assessed(4, "gn", assessment(-0.012, -0.03, 0.006, "unresolved", p=0.4, to_resolve=9)),
            assessed(4, "ln", assessment(-0.05, -0.09, -0.01, "worse", p=0.01)),
            assessed(128, "gn", assessment(0.003, -0.009, 0.015, "unresolved", p=1, to_resolve=7)),
            assessed(128, "ln", assessment(0.001, -0.005, 0.007, "equivalent", p=0.8)),
        ]
    )
    # Context 4: 4 more seeds x 90 s; context 128: 2 x 90 s; together 540 s.
    assert "about 9 min more of training in 2 context(s)" in result.paragraph
    assert result.recommendation.startswith("Recommendation: at batch size 4 use ln")
    assert "undecided at batch size 128" in result.recommendation


def test_fewer_than_three_seeds_are_never_called_significant():
    result = study(
        [assessed(4, "gn", assessment(-0.1, None, None, "unresolved", seeds=2, detectable=None))],
        means={("bn", 4): 0.8, ("gn", 4): 0.9},
        rounds=(2,),
    )
    assert "no repeated 95% CI: fewer than 3 evaluation seeds" in result.paragraph
    assert "significantly" not in result.paragraph


def test_seconds_per_evaluation_seed_sum_the_cells_of_a_context():
    records = adaptive_records(MEANS, rounds=(3, 2, 2), wall_time=WALL)
    assert seconds_per_seed(records, {"batch_size": 4}, "norm") == pytest.approx(3 * WALL)
    # Tuning runs (wall_time 1.0 in the synthetic records) do not count.
    tuning = [r for r in records if r["role"] == "tune"]
    assert seconds_per_seed(tuning, {"batch_size": 4}, "norm") is None


def test_remedies_that_keep_bn_are_offered_where_bn_loses():
    means = {("bn", 4): 0.80, ("gn", 4): 0.90, ("brn", 4): 0.90}
    result = study(
        [
            assessed(4, "gn", assessment(-0.10, -0.14, -0.06, "worse", p=0.002)),
            assessed(4, "brn", assessment(-0.10, -0.14, -0.06, "worse", p=0.002)),
        ],
        means=means,
    )
    assert "Remedies that keep BN there, against gn" in result.paragraph
    assert re.search(r"brn -?0\.\d points \(TOST", result.paragraph)


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (540, "9 min"), (3 * 3600, "3.0 h")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def judged(means, rounds=(3, 3), noise=0.004):
    records = adaptive_records(means, rounds=rounds, noise=noise, wall_time=WALL)
    design = SequentialDesign()
    items = assess_study(records, design, "bn")
    design = replace(design, comparisons=len(items))
    cells = cell_statistics(records)
    return items, adaptive_verdict(cells, items, design, records, "norm", "bn")


def test_assessed_records_a_planted_deficit_is_called_with_its_own_interval():
    items, result = judged({("bn", 4): 0.80, ("gn", 4): 0.90, ("ln", 4): 0.85})
    gn = next(i for i in items if i.alternative == "gn")
    assert gn.assessment.status == "worse" and gn.assessment.seeds == 6
    low, high = gn.assessment.interval.negated().low, gn.assessment.interval.negated().high
    assert (
        f"significantly worse than gn, {100 * -gn.assessment.mean:.1f} points below it "
        f"(gn - bn: repeated 95% CI {100 * low:.1f} to {100 * high:.1f}, "
        f"adjusted p = {gn.assessment.p_value:.2g})"
    ) in result.paragraph
    assert "6 evaluation seeds in 2 round(s)" in result.paragraph
    assert result.recommendation.startswith("Recommendation: at batch size 4 use gn")
    for item in items:  # the interval the verdict quotes and the test agree
        a = item.assessment
        assert (a.interval.low > 0 or a.interval.high < 0) == (a.p_value < DESIGN.alpha)


def test_assessed_records_without_a_difference_are_never_significant():
    seen = set()
    for seed_noise in (0.002, 0.02):
        items, result = judged(
            {("bn", 4): 0.95, ("gn", 4): 0.95, ("bn", 8): 0.95, ("gn", 8): 0.95}, noise=seed_noise
        )
        assert {i.assessment.status for i in items} <= {"equivalent", "unresolved"}
        assert "significantly" not in result.paragraph and result.switch_to == ()
        seen |= {i.assessment.status for i in items}
    # Consistent seeds show equivalence; noisy ones leave it open: both wordings are exercised.
    assert seen == {"equivalent", "unresolved"}


def test_a_deficit_is_decomposed_by_precisebn_over_evaluation_seeds():
    records = adaptive_records({("bn", 4): 0.80, ("gn", 4): 0.90}, rounds=(3,), wall_time=WALL)
    cells = cell_statistics(records)
    bn = next(c for c in cells if c.label == "bn")
    # PreciseBN recovers 3 points on every evaluation seed; tuning seeds' records are not read.
    gaps = {
        seed: {"running_acc": acc, "precise_acc": acc + 0.03, "batch_acc": acc + 0.05}
        for seed, acc in bn.test_by_seed.items()
    }
    gaps[1000] = {"running_acc": 0.0, "precise_acc": 1.0, "batch_acc": 1.0}
    item = assessed(4, "gn", assessment(-0.10, -0.14, -0.06, "worse", p=0.002, seeds=3), 1)
    result = adaptive_verdict(
        cells, [item], DESIGN, records, "norm", "bn", gaps={cell_key(bn.summary.cell): gaps}
    )
    assert (
        "PreciseBN recalibration of bn's runs changes its accuracy by +3.0 points (PreciseBN - "
        "EMA, paired over 3 evaluation seeds"
    ) in result.paragraph


def test_a_saturated_context_is_named_first_and_recommends_nothing_there():
    means = {("bn", 4): 0.999, ("gn", 4): 0.998, ("bn", 8): 0.80, ("gn", 8): 0.90}
    result = study(
        [
            assessed(4, "gn", assessment(0.001, -0.004, 0.006, "equivalent", p=1.0)),
            assessed(8, "gn", assessment(-0.10, -0.14, -0.06, "worse", p=0.002)),
        ],
        means=means,
        noise=0.0005,  # every run of batch size 4 stays at or above 99.5%
    )
    saturated = next(s for s in result.sentences if "reaches the ceiling" in s)
    assert saturated.startswith("At batch size 4, every level of norm reaches the ceiling")
    assert "At batch size 4 (saturated: no evidence either way)" in result.paragraph
    assert result.recommendation == "Recommendation: at batch size 8 use gn."


def test_without_an_interval_nothing_is_projected_from_the_seeds():
    # Two evaluation seeds (round 1 interrupted): no interval, no spread to project from. The
    # verdict must not say a number of seeds would resolve it, nor count it as projected.
    records = adaptive_records({("bn", 4): 0.80, ("gn", 4): 0.90}, rounds=(2,), wall_time=WALL)
    items = assess_study(records, SequentialDesign(), "bn")
    assert items[0].assessment.interval is None
    result = adaptive_verdict(cell_statistics(records), items, DESIGN, records, "norm", "bn")
    text = result.paragraph
    assert "no repeated 95% CI: fewer than 3 evaluation seeds" in text
    assert "seeds would resolve it" not in text
    assert "A larger budget would resolve" not in text


def test_a_look_not_reached_is_not_called_identical_differences():
    # With first_round = 5, four seeds reach no look yet: no interval, but the differences vary.
    records = adaptive_records({("bn", 4): 0.80, ("gn", 4): 0.90}, rounds=(4,), noise=0.01)
    design = SequentialDesign(first_round=5, round_seeds=5, comparisons=1)
    items = assess_study(records, design, "bn")
    assert items[0].assessment.seeds == 4 and items[0].assessment.interval is None
    text = adaptive_verdict(cell_statistics(records), items, design, records, "norm", "bn")
    assert "identical paired differences" not in text.paragraph
    assert "fewer than 5 evaluation seeds" in text.paragraph


def test_a_projection_without_a_measured_time_is_not_called_unprojected():
    # Evaluation runs without a recorded wall time: the projection stands, only its time is
    # unknown; the summary must not say none is projected to resolve.
    records = adaptive_records(MEANS, rounds=(3, 2), wall_time=WALL)
    for record in records:
        if record["role"] == "eval":
            record["wall_time"] = None
    items = [
        assessed(4, "gn", assessment(-0.012, -0.03, 0.006, "unresolved", p=0.4, to_resolve=11)),
        assessed(128, "gn", assessment(0.0, -0.006, 0.006, "equivalent", p=0.9)),
    ]
    text = adaptive_verdict(cell_statistics(records), items, DESIGN, records, "norm", "bn")
    assert "about 11 seeds would resolve it" in text.paragraph
    assert "none of them is projected to resolve" not in text.paragraph
