"""Statistics over seeds: t-intervals, paired tests, equivalence tests, Holm correction, effect
sizes. Pure functions over plain floats (numpy, and scipy.special's Student t distribution
``stdtr`` / ``stdtrit``, which the statistics need at run time; no torch, no I/O).

- t-interval of a mean (Student 1908): mean ± t_{1-a/2, n-1} sd / sqrt(n). The paired mean
  difference gets the same interval over its per-seed differences, so that an interval and its
  test agree: the (1 - a) interval excludes 0 exactly when the paired t-test's p < a. (The
  percentile bootstrap used before covered the mean of normal data 75% of the time at 3 seeds and
  86% at 5; the t-interval's coverage is exact for normal data: docs/PROTOCOL.md.)
- Paired t-test on per-seed differences d_s (seed s gives both arms the same data order and
  initialization stream): t = mean(d) / (sd(d) / sqrt(n)), n - 1 degrees of freedom.
- Identical differences (sd = 0, frequent with few seeds because accuracies are multiples of one
  over the test set's size) make t infinite. They get the exact sign-flip (permutation) test
  instead (Fisher 1935; Good 2005, ch. 3): under the null every one of the 2^n sign patterns of
  the differences is equally likely, and p is the share of patterns whose mean is at least as
  extreme. For n identical non-zero differences p = 2 / 2^n (0.25 at 3 seeds, 0.0625 at 5): a
  valid test for discrete accuracies, with no variance to estimate.
- Two one-sided tests (TOST; Schuirmann 1987; Lakens 2017) for equivalence within ±margin:
  p = max(p of H0: mean <= -margin, p of H0: mean >= margin); equivalence at level a is the
  (1 - 2a) t-interval lying inside (-margin, margin).
- Holm (1979) step-down correction over a family of m tests: sort p ascending, adjusted
  p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)); controls the family-wise error rate.
  :func:`holm_level` turns a Holm-adjusted p back into the level at which the comparison was
  effectively tested, so that an interval at that level agrees with the Holm decision.
- Cohen's d_z (Cohen 1988; Lakens 2013) for paired data: mean(d) / sd(d).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr, stdtrit

MIN_SEEDS_FOR_CI = 3
"""Fewest seeds for an interval and for a test that may be called significant: with two, a t
statistic has one degree of freedom and identical differences are common."""
CONFIDENCE = 0.95
ZERO_SPREAD = 1e-9
"""A standard deviation below this is zero: accuracies are multiples of one over the test set's
size, and differences of equal ones computed in floating point differ by ~1e-16, which would
make a t statistic astronomically large instead of undefined."""
MAX_SIGN_FLIP_SEEDS = 20
"""Above this the exact sign-flip test would enumerate more than 2^20 patterns; with that many
seeds a zero-variance difference is significant by any rule, and the closed form is used."""


@dataclass(frozen=True)
class Interval:
    """A confidence interval [low, high]."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def negated(self) -> Interval:
        return Interval(-self.high, -self.low)


def mean(values: Sequence[float]) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1)) if len(values) > 1 else None


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Student t-interval of the mean; None below :data:`MIN_SEEDS_FOR_CI` values or when the
    values are all identical and the confidence is below 1 (no spread to scale: see
    :func:`paired_t_test`)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < MIN_SEEDS_FOR_CI:
        return None
    sd = float(np.std(data, ddof=1))
    if sd < ZERO_SPREAD:
        return None
    half = float(stdtrit(data.size - 1, 0.5 + confidence / 2.0)) * sd / math.sqrt(data.size)
    centre = float(data.mean())
    return Interval(centre - half, centre + half)


def sign_flip_test(differences: Sequence[float], alternative: str = "two-sided") -> float:
    """Exact sign-flip permutation p-value of the mean of ``differences`` against 0.

    ``alternative``: ``two-sided`` (|mean| at least as large), ``greater`` (mean at least as
    large: H0 mean <= 0), ``less``. Exact over all 2^n sign patterns up to
    :data:`MAX_SIGN_FLIP_SEEDS`, else over the patterns of identical differences only.
    """
    data = np.asarray(differences, dtype=np.float64)
    observed = float(data.sum())
    tolerance = 1e-12 * max(1.0, float(np.abs(data).sum()))  # float sums of the same terms
    if data.size > MAX_SIGN_FLIP_SEEDS:
        if np.ptp(data) > ZERO_SPREAD:
            raise ValueError("sign_flip_test enumerates at most 2^20 patterns")
        # Identical differences: only the all-same-sign patterns are as extreme.
        if abs(observed) <= tolerance:
            return 1.0
        if alternative == "two-sided":
            return 2.0 / 2.0**data.size
        toward = observed > 0 if alternative == "greater" else observed < 0
        return 1.0 / 2.0**data.size if toward else 1.0
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=data.size)))
    sums = signs @ data
    if alternative == "greater":
        hits = sums >= observed - tolerance
    elif alternative == "less":
        hits = sums <= observed + tolerance
    else:
        hits = np.abs(sums) >= abs(observed) - tolerance
    return float(hits.mean())


def paired_t_test(differences: Sequence[float]) -> float | None:
    """Two-sided p-value that the mean paired difference is 0; None below two pairs.

    Identical differences (sd = 0): the exact sign-flip test (module docstring).
    """
    data = np.asarray(differences, dtype=np.float64)
    if data.size < 2:
        return None
    sd = float(np.std(data, ddof=1))
    if sd < ZERO_SPREAD:
        return sign_flip_test(data)
    t = float(data.mean()) / (sd / math.sqrt(data.size))
    return float(min(1.0, 2.0 * stdtr(data.size - 1, -abs(t))))


def equivalence_test(differences: Sequence[float], margin: float) -> float | None:
    """TOST p-value that the mean paired difference lies inside (-margin, margin); None below
    two pairs. Identical differences: each one-sided test is the exact sign-flip test."""
    data = np.asarray(differences, dtype=np.float64)
    if data.size < 2:
        return None
    sd = float(np.std(data, ddof=1))
    if sd < ZERO_SPREAD:
        return max(sign_flip_test(data + margin, "greater"), sign_flip_test(data - margin, "less"))
    scale = sd / math.sqrt(data.size)
    df = data.size - 1
    above_lower = float(stdtr(df, -(data.mean() + margin) / scale))
    below_upper = float(stdtr(df, (data.mean() - margin) / scale))
    return max(above_lower, below_upper)


def cohens_dz(differences: Sequence[float]) -> float | None:
    """Effect size of paired differences, mean / sd; None below two pairs or with sd = 0."""
    sd = std(differences)
    if sd is None or sd < ZERO_SPREAD:
        return None
    return mean(differences) / sd


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values in the input order (None stays None and is not in the family)."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def holm_level(p_value: float, p_holm: float, alpha: float) -> float:
    """The level at which Holm's procedure effectively tested one comparison: alpha * p /
    p_holm (p_holm = c * p with c >= 1 the comparison's step-down multiplier, or the cap at 1).
    Then p < holm_level exactly when p_holm < alpha, so the (1 - holm_level) interval excludes
    the null value exactly when Holm rejects. It is never above alpha: each such interval covers
    at least as often as the unadjusted one (marginally; they are not simultaneous intervals)."""
    if p_holm <= 0.0:
        return alpha
    return min(alpha, alpha * p_value / p_holm)
