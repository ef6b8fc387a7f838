"""The sequential procedure: its schedule and levels against their formulas, interval and test in
agreement, the zero-spread rule, and its error rates measured on simulated studies (no training).

Simulation sizes: 2,000 studies per null scenario, as the protocol requires; a family error rate
p estimated from 2,000 studies has Monte-Carlo standard error sqrt(p (1 - p) / 2000) <= 0.5
points at p = 5%, and the assertions allow two of them above 5%.
"""

import math

import numpy as np
import pytest
from scipy import stats

from normlab.analysis.sequential import SequentialDesign, assess
from normlab.analysis.simulate import _run_rounds, simulate

ALPHA = 0.05


def test_looks_follow_the_rounds_and_end_at_max_seeds():
    assert SequentialDesign(first_round=3, round_seeds=3, max_seeds=20).looks() == (
        3, 6, 9, 12, 15, 18, 20,
    )  # fmt: skip
    assert SequentialDesign(first_round=3, round_seeds=2, max_seeds=9).looks() == (3, 5, 7, 9)
    design = SequentialDesign(max_seeds=9, round_seeds=2)
    assert design.next_look(3) == 5 and design.next_look(9) is None
    assert design.look_at(6) == 5 and design.look_at(2) is None


@pytest.mark.parametrize("spending", ["pocock", "obrien-fleming"])
def test_levels_spend_exactly_alpha_over_m_by_the_last_look(spending):
    design = SequentialDesign(comparisons=6, spending=spending)
    levels = [design.level(n) for n in design.looks()]
    assert all(level > 0 for level in levels)
    assert sum(levels) == pytest.approx(ALPHA / 6, rel=1e-12)


def test_pocock_level_is_the_lan_demets_increment():
    # f(t) = a ln(1 + (e - 1) t), a = alpha / m; the look at 6 of 20 seeds after the one at 3.
    design = SequentialDesign(comparisons=4, round_seeds=3)
    spent = lambda t: ALPHA / 4 * math.log(1 + (math.e - 1) * t)  # noqa: E731
    assert design.level(6) == pytest.approx(spent(6 / 20) - spent(3 / 20), rel=1e-12)
    assert design.critical(6) == pytest.approx(stats.t.ppf(1 - design.level(6) / 2, 5), rel=1e-9)


def test_interval_is_mean_plus_minus_critical_times_standard_error():
    design = SequentialDesign(comparisons=3)
    differences = [0.02, 0.035, 0.01, 0.03, 0.025, 0.04]
    result = assess(differences, design)
    sd = np.std(differences, ddof=1)
    half = design.critical(6) * sd / math.sqrt(6)
    assert result.interval.low == pytest.approx(np.mean(differences) - half, rel=1e-12)
    assert result.interval.high == pytest.approx(np.mean(differences) + half, rel=1e-12)
    assert result.detectable == pytest.approx(half, rel=1e-12)


def test_the_test_and_the_interval_never_disagree():
    # The repeated p-value is below alpha exactly when the repeated interval excludes 0.
    generator = np.random.default_rng(3)
    design = SequentialDesign(comparisons=6)
    agreed = 0
    for _ in range(400):
        seeds = int(generator.choice(design.looks()))
        effect = generator.normal(0.0, 0.02)
        differences = effect + generator.normal(0.0, 0.01, size=seeds)
        result = assess(differences, design)
        excludes = result.interval.low > 0 or result.interval.high < 0
        assert (result.p_value < ALPHA) == excludes
        assert excludes == (result.status in ("better", "worse"))
        agreed += excludes
    assert 20 < agreed < 380  # both outcomes were exercised


def test_statuses_follow_the_interval():
    design = SequentialDesign(comparisons=1, margin=0.01)
    assert assess([0.10, 0.11, 0.12, 0.10, 0.11], design).status == "better"
    assert assess([-0.10, -0.11, -0.12, -0.10, -0.11], design).status == "worse"
    equivalent = assess([0.001, -0.001, 0.0, 0.001, -0.0005, 0.0, 0.0005], design)
    assert equivalent.status == "equivalent"
    assert equivalent.interval.low > -0.01 and equivalent.interval.high < 0.01
    assert assess([0.02, -0.03, 0.01], design).status == "unresolved"


def test_fewer_than_three_seeds_are_never_significant():
    design = SequentialDesign(comparisons=1)
    for differences in ([0.3, 0.3], [0.5], []):
        result = assess(differences, design, resolution=0.001)
        assert result.status == "unresolved" and result.interval is None
        assert result.p_value is None


def test_identical_differences_use_the_resolution_as_their_spread():
    # Accuracies are multiples of 1/280: three identical differences of 1 example have sd 0; the
    # floor keeps the interval from being a point (t would be infinite).
    design = SequentialDesign(comparisons=1)
    one_example = 1 / 280
    result = assess([one_example] * 3, design, resolution=one_example)
    assert result.sd == pytest.approx(one_example)
    assert result.status == "unresolved" and result.p_value > ALPHA
    assert assess([one_example] * 3, design).interval is None  # no floor given: no interval


def test_projection_names_the_look_that_would_resolve():
    design = SequentialDesign(comparisons=1)
    result = assess([0.03, 0.01, 0.05], design)  # mean 3 points, sd 2: unresolved at 3
    assert result.status == "unresolved"
    look = result.seeds_to_resolve
    assert look in design.looks() and look > 3
    assert design.detectable(look, result.sd) < 0.03
    assert design.detectable(design.looks()[design.looks().index(look) - 1], result.sd) >= 0.03


@pytest.mark.parametrize("model", ["normal", "binomial"])
@pytest.mark.parametrize("sd", [0.01, 0.002])
def test_null_family_wise_error_rate_is_at_most_alpha(model, sd):
    # 2 contexts x 3 alternatives, no difference anywhere: every "better"/"worse" is an error.
    # The binomial model has 280 test examples (the digits test split): with sd 0.002 most
    # per-seed differences are a few examples and often identical.
    result = simulate(
        SequentialDesign(), [[0.0] * 3] * 2, studies=2000, sd=sd, model=model, test_examples=280
    )
    assert result.family_error_rate <= ALPHA + 2 * max(result.monte_carlo_error(), 0.005)


def test_false_equivalence_is_rare_at_the_margin():
    # A true difference of exactly the margin may not be called equivalent more than alpha.
    result = simulate(SequentialDesign(margin=0.01), [[0.01] * 3], studies=2000, sd=0.002)
    assert result.family_error_rate <= ALPHA + 2 * max(result.monte_carlo_error(), 0.005)


def test_power_grows_with_the_planted_effect():
    # d_z = effect / (sd sqrt 2); 6 comparisons as in a --batch-size study with its reference.
    sd = 0.01
    power = {}
    for d_z in (0.5, 1.0, 2.0):
        effect = d_z * sd * math.sqrt(2)
        result = simulate(SequentialDesign(), [[effect] * 3] * 2, studies=2000, sd=sd)
        assert result.family_error_rate <= ALPHA + 0.01  # planted in the true direction
        power[d_z] = float(result.decided.mean())
    assert power[0.5] < power[1.0] < power[2.0]
    assert power[2.0] > 0.99 and power[1.0] > 0.5


def test_vectorized_simulation_agrees_with_assess_round_by_round():
    # The simulation's rounds are the runner's: look, stop once resolved, else add seeds.
    generator = np.random.default_rng(5)
    design = SequentialDesign(comparisons=1)
    code = {"unresolved": 0, "better": 1, "worse": -1, "equivalent": 2}
    for _ in range(100):
        differences = generator.normal(generator.normal(0.0, 0.01), 0.006, size=design.max_seeds)
        for look in design.looks():
            expected = assess(differences[:look], design)
            if expected.resolved:
                break
        status, used = _run_rounds(design, differences[None, None, None, :], 0.0)
        assert status[0, 0, 0] == code[expected.status] and used[0, 0] == look


@pytest.mark.parametrize("comparisons", [1, 3])
def test_obrien_fleming_p_value_agrees_with_its_interval_at_later_looks(comparisons):
    # O'Brien-Fleming-type spending is not monotone in the family alpha at a later look (at
    # alpha 1 it spends everything at the first look, nothing after): the p-value must still be
    # the smallest family level at which the interval excludes 0, not 1.
    design = SequentialDesign(comparisons=comparisons, spending="obrien-fleming")
    result = assess([0.05, 0.06, 0.04, 0.05, 0.055, 0.045], design)
    assert result.status == "better"
    assert result.p_value < ALPHA
    # At the p-value found, the look's level equals the two-sided t tail of the statistic.
    t = abs(result.mean) / (result.sd / math.sqrt(result.seeds))
    raw = 2.0 * stats.t.sf(t, result.seeds - 1)
    assert design.level(result.seeds, result.p_value) == pytest.approx(raw, rel=1e-6)
