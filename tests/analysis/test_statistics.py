"""Bootstrap CIs, the paired t-test, Holm and Cohen's d_z against scipy on fixed inputs."""

import numpy as np
import pytest

scipy_stats = pytest.importorskip("scipy.stats")

from normlab.analysis.statistics import (  # noqa: E402
    bootstrap_ci,
    cohens_dz,
    holm,
    paired_t_test,
    std,
)

PAIRS = [
    ([0.91, 0.93, 0.90, 0.94, 0.92], [0.95, 0.96, 0.93, 0.97, 0.95]),
    ([0.5, 0.52, 0.49], [0.51, 0.50, 0.50]),
    ([0.99, 0.98, 0.985, 0.99, 0.97, 0.995, 0.98], [0.97, 0.975, 0.99, 0.96, 0.97, 0.98, 0.96]),
    ([1.0, 2.0], [3.0, 3.5]),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_paired_t_test_matches_scipy(a, b):
    expected = scipy_stats.ttest_rel(a, b).pvalue
    differences = np.subtract(a, b)
    # float64 throughout; the continued fraction converges to ~1e-15 relative.
    assert paired_t_test(differences) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_paired_t_test_extreme_t_matches_scipy():
    differences = [1.0, 1.001, 0.999, 1.0005]
    expected = scipy_stats.ttest_1samp(differences, 0.0).pvalue
    assert paired_t_test(differences) == pytest.approx(expected, rel=1e-6)


def test_paired_t_test_degenerate_cases():
    assert paired_t_test([0.01]) is None
    assert paired_t_test([0.0, 0.0, 0.0]) == 1.0
    assert paired_t_test([0.02, 0.02, 0.02]) == 0.0


def test_holm_matches_statsmodels_definition():
    # Holm by hand: sorted 0.01, 0.02, 0.03, 0.04 times 4, 3, 2, 1, running maximum.
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]
    assert holm([0.001]) == [0.001]


def test_cohens_dz_is_mean_over_sd():
    differences = [0.02, 0.03, 0.01, 0.04]
    assert cohens_dz(differences) == pytest.approx(
        np.mean(differences) / np.std(differences, ddof=1)
    )
    assert cohens_dz([0.1]) is None
    assert std([0.3]) is None


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    values = [0.91, 0.93, 0.90, 0.94, 0.92, 0.95]
    ci = bootstrap_ci(values, resamples=20_000)
    reference = scipy_stats.bootstrap(
        (values,), np.mean, method="percentile", n_resamples=20_000, random_state=1
    ).confidence_interval
    # Two independent Monte Carlo estimates of the same percentiles: they agree to a fraction of
    # the interval's width, not exactly.
    width = reference.high - reference.low
    assert ci.low == pytest.approx(reference.low, abs=0.1 * width)
    assert ci.high == pytest.approx(reference.high, abs=0.1 * width)
    assert ci.contains(float(np.mean(values)))


def test_bootstrap_ci_is_reproducible_and_absent_below_three_seeds():
    values = [0.8, 0.85, 0.9, 0.82]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    assert bootstrap_ci([0.8, 0.9]) is None
