"""Statistics over seeds: bootstrap confidence intervals, paired t-tests, Holm correction,
effect sizes. Pure functions over plain floats (numpy and math only, no torch, no I/O).

- Percentile bootstrap (Efron & Tibshirani 1993, ch. 13): resample the n seeds with replacement
  ``resamples`` times with a *fixed* generator seed, so that a report is reproducible; the 95%
  interval is the 2.5th and 97.5th percentiles of the resampled means. Below
  :data:`MIN_SEEDS_FOR_CI` seeds the resampling distribution has too few distinct values to mean
  anything (two seeds give three), and no interval is given.
- Paired t-test (Student 1908) on per-seed differences d_s (seed s gives both arms the same data
  order and initialization stream): t = mean(d) / (sd(d) / sqrt(n)), n - 1 degrees of freedom,
  two-sided p = I_{df/(df+t^2)}(df/2, 1/2), with I the regularized incomplete beta function
  (continued fraction of Numerical Recipes, 3rd ed., sec. 6.4).
- Holm (1979) step-down correction over a family of m tests: sort p ascending, adjusted
  p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)); controls the family-wise error rate.
- Cohen's d_z (Cohen 1988; Lakens 2013) for paired data: mean(d) / sd(d).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_SEEDS_FOR_CI = 3
BOOTSTRAP_SEED = 20240515
"""Fixed generator seed of every bootstrap: the same records give the same report."""
RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A confidence interval [low, high]."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def mean(values: Sequence[float]) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1)) if len(values) > 1 else None


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval | None:
    """Percentile bootstrap interval of the mean; None below :data:`MIN_SEEDS_FOR_CI` values."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < MIN_SEEDS_FOR_CI:
        return None
    generator = np.random.default_rng(seed)
    indices = generator.integers(0, data.size, size=(resamples, data.size))
    means = data[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(low), float(high))


def paired_t_test(differences: Sequence[float]) -> float | None:
    """Two-sided p-value of the paired t-test that the mean difference is 0.

    None below two pairs. Identical differences (sd = 0): p = 1 when they are all 0, else 0.
    """
    data = np.asarray(differences, dtype=np.float64)
    if data.size < 2:
        return None
    sd = float(np.std(data, ddof=1))
    average = float(data.mean())
    if sd == 0.0:
        return 1.0 if average == 0.0 else 0.0
    t = average / (sd / math.sqrt(data.size))
    df = data.size - 1
    return min(1.0, _betainc(df / 2.0, 0.5, df / (df + t * t)))


def cohens_dz(differences: Sequence[float]) -> float | None:
    """Effect size of paired differences, mean / sd; None below two pairs or with sd = 0."""
    sd = std(differences)
    if sd is None or sd == 0.0:
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


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (Numerical Recipes 3rd ed., eq. 6.4.5)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, modified Lentz's method."""
    tiny, epsilon = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < epsilon:
            break
    return result
