"""Group-sequential paired comparisons: when to stop adding seeds, and how sure the answer is.

The adaptive protocol trains evaluation seeds in rounds and looks at its comparisons after each
round, stopping a context once its comparisons are answered. Looking repeatedly and stopping on
what one sees inflates the error rate of a fixed-sample test; this module keeps it at ``alpha``.

Method (Jennison & Turnbull 2000, ch. 7 and 9; Lan & DeMets 1983):

- **Looks.** A comparison is looked at after ``first_round`` seeds, then every ``round_seeds``
  more, up to ``max_seeds``: the schedule :meth:`SequentialDesign.looks`. Its information
  fraction at ``n`` seeds is ``t = n / max_seeds``.
- **Alpha spending** (Lan & DeMets 1983). Each comparison gets ``alpha / m`` (Bonferroni over the
  study's ``m`` comparisons, so the family-wise rate holds whatever the correlation between
  comparisons that share a baseline). A spending function ``f(t)`` with ``f(1) = alpha / m``
  gives the look at ``t_k`` the level ``f(t_k) - f(t_{k-1})``. The default is the Pocock-type
  function ``f(t) = a ln(1 + (e - 1) t)``, which spends early enough for a large effect to stop
  after a few rounds; ``obrien-fleming`` (``f(t) = 2 - 2 Phi(z_{1-a/2} / sqrt(t))``) keeps
  almost everything for the last look.
- **Repeated confidence intervals** (Jennison & Turnbull 1989). At a look with ``n`` seeds the
  interval is ``mean ± c sd / sqrt(n)`` with ``c`` the Student t quantile (``n - 1`` degrees of
  freedom) at that look's level. By the union bound over looks and comparisons, every interval
  at every look covers its true difference with probability at least ``1 - alpha``, whichever
  looks are taken and whenever a context stops: stopping on the data cannot make a claim wrong
  more often. (Exact group-sequential boundaries would be less conservative, but they assume a
  known variance; with 3 to 20 seeds the t distribution's tails matter more than the
  correlation between looks. The simulations in ``tests/analysis/test_sequential.py`` and
  ``benchmarks/sequential_error.py`` measure what the bound costs.)
- **Decisions from the interval alone**, so that an interval and its verdict never disagree:
  *better* / *worse* (the baseline significantly better or worse than the alternative) when
  the interval excludes 0; *equivalent* when it lies inside ``(-margin, margin)`` (two one-sided
  tests at the same level, Schuirmann 1987); otherwise *unresolved*. If every interval covers,
  no claim of either kind is wrong, so the family-wise error rate of all claims is at most
  ``alpha``.
- **Repeated p-value**: the smallest family level at which this look's interval would exclude
  0; it is below ``alpha`` exactly when the interval excludes 0.
- **Discrete accuracies.** Test accuracies are multiples of ``resolution`` (one over the test
  set's size), so identical per-seed differences (sd 0) are common and would make any interval a
  point. The standard deviation used is ``max(sd, resolution)``: the spread of one test example,
  a floor no real comparison is below. Fewer than :data:`~.statistics.MIN_SEEDS_FOR_CI` seeds
  give no interval and no claim.

Pure functions over floats (numpy, scipy); no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from .statistics import MIN_SEEDS_FOR_CI, ZERO_SPREAD, Interval

SPENDING_FUNCTIONS = ("pocock", "obrien-fleming")
STATUSES = ("better", "worse", "equivalent", "unresolved")


@dataclass(frozen=True)
class SequentialDesign:
    """The schedule of looks and the error rates of one adaptive study."""

    first_round: int = 3
    """Evaluation seeds of the first round."""
    round_seeds: int = 3
    """Evaluation seeds each later round adds (3: fewer looks than 2 spend less alpha on the
    union bound; at d_z = 1 over 6 comparisons the power is 0.65 against 0.56 with 2)."""
    max_seeds: int = 20
    """No context gets more evaluation seeds than this."""
    alpha: float = 0.05
    """Family-wise error rate of every claim of the study (significant or equivalent)."""
    margin: float = 0.01
    """Equivalence margin, in accuracy (0.01 = 1 point)."""
    comparisons: int = 1
    """Family size ``m``: the study's (context, alternative) comparisons."""
    spending: str = "pocock"
    """Alpha-spending function: ``pocock`` or ``obrien-fleming`` (module docstring)."""

    def __post_init__(self) -> None:
        if self.first_round < MIN_SEEDS_FOR_CI:
            raise ValueError(f"first_round must be at least {MIN_SEEDS_FOR_CI}")
        if self.round_seeds < 1 or self.max_seeds < self.first_round:
            raise ValueError("round_seeds must be >= 1 and max_seeds >= first_round")
        if not 0.0 < self.alpha < 1.0 or self.margin < 0.0 or self.comparisons < 1:
            raise ValueError("alpha must lie in (0, 1), margin >= 0, comparisons >= 1")
        if self.spending not in SPENDING_FUNCTIONS:
            raise ValueError(f"spending must be one of {SPENDING_FUNCTIONS}")

    def looks(self) -> tuple[int, ...]:
        """Seeds at each look: ``first_round``, then ``round_seeds`` more each, capped."""
        looks = list(range(self.first_round, self.max_seeds, self.round_seeds))
        return (*looks, self.max_seeds) if looks[-1:] != [self.max_seeds] else tuple(looks)

    def next_look(self, seeds: int) -> int | None:
        """Seeds of the first look after ``seeds``; None once ``max_seeds`` is reached."""
        return next((look for look in self.looks() if look > seeds), None)

    def look_at(self, seeds: int) -> int | None:
        """The last look with at most ``seeds`` seeds (the one ``seeds`` are judged at)."""
        at = [look for look in self.looks() if look <= seeds]
        return at[-1] if at else None

    def level(self, seeds: int, family_alpha: float | None = None) -> float:
        """Two-sided level of one comparison at the look for ``seeds``: the alpha its spending
        function spends there (``family_alpha`` instead of ``alpha`` for repeated p-values)."""
        look = self.look_at(seeds)
        if look is None:
            return 0.0
        looks = self.looks()
        index = looks.index(look)
        per_comparison = (self.alpha if family_alpha is None else family_alpha) / self.comparisons
        before = looks[index - 1] / self.max_seeds if index else 0.0
        return _spent(self.spending, per_comparison, look / self.max_seeds) - _spent(
            self.spending, per_comparison, before
        )

    def critical(self, seeds: int) -> float:
        """Student t quantile the interval at ``seeds`` seeds uses (inf before the first look)."""
        level = self.level(seeds)
        if level <= 0.0:
            return math.inf
        return float(-stdtrit(seeds - 1, level / 2.0))

    def detectable(self, seeds: int, sd: float) -> float:
        """Half-width of the interval at ``seeds`` seeds for differences of spread ``sd``: the
        smallest difference that look can call significant."""
        return self.critical(seeds) * sd / math.sqrt(seeds)


def _spent(spending: str, alpha: float, fraction: float) -> float:
    """Alpha spent by information ``fraction`` (Lan & DeMets 1983; Kim & DeMets 1987)."""
    if fraction <= 0.0:
        return 0.0
    fraction = min(fraction, 1.0)
    if spending == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * fraction)
    # 2 - 2 Phi(z / sqrt(t)) with z = z_{1-a/2}, written with the lower tails for small alpha.
    return float(2.0 * ndtr(ndtri(alpha / 2.0) / math.sqrt(fraction)))


@dataclass(frozen=True)
class Assessment:
    """One comparison at its latest look."""

    seeds: int
    mean: float | None
    """Mean paired difference (baseline - alternative); None without seeds."""
    interval: Interval | None
    """Repeated confidence interval; None before the first look."""
    status: str
    """``better`` / ``worse`` (the baseline significantly better / worse than the alternative),
    ``equivalent`` (interval inside ±margin) or ``unresolved``."""
    p_value: float | None
    """Repeated p-value (family level): below ``alpha`` exactly when the interval excludes 0."""
    detectable: float | None
    """Minimum detectable effect at this look: the interval's half-width."""
    seeds_to_resolve: int | None
    """For an unresolved comparison, the first look at which the observed mean and spread would
    resolve it (None: not by ``max_seeds``); for a resolved one, its seeds."""
    sd: float | None = None
    """Standard deviation the interval used (floored at the resolution)."""

    @property
    def resolved(self) -> bool:
        return self.status != "unresolved"


def assess(
    differences: Sequence[float], design: SequentialDesign, resolution: float = 0.0
) -> Assessment:
    """Judge paired ``differences`` (baseline - alternative, one per seed) at their look.

    ``resolution``: the accuracy of one test example (floor of the spread; module docstring).
    """
    data = np.asarray(differences, dtype=np.float64)
    seeds = int(data.size)
    if seeds == 0:
        return Assessment(0, None, None, "unresolved", None, None, design.first_round)
    centre = float(data.mean())
    look = design.look_at(seeds)
    spread = float(np.std(data, ddof=1)) if seeds > 1 else 0.0
    sd = max(spread, resolution)
    if look is None or seeds < MIN_SEEDS_FOR_CI or sd < ZERO_SPREAD:
        return Assessment(seeds, centre, None, "unresolved", None, None, design.first_round, None)
    half = design.detectable(seeds, sd)
    interval = Interval(centre - half, centre + half)
    status = _status(interval, design.margin)
    p_value = _repeated_p(design, seeds, abs(centre) / (sd / math.sqrt(seeds)))
    to_resolve = seeds if status != "unresolved" else _seeds_to_resolve(design, centre, sd, seeds)
    return Assessment(seeds, centre, interval, status, p_value, half, to_resolve, sd)


def _status(interval: Interval, margin: float) -> str:
    if interval.low > 0.0:
        return "better"
    if interval.high < 0.0:
        return "worse"
    if -margin < interval.low and interval.high < margin:
        return "equivalent"
    return "unresolved"


def _repeated_p(design: SequentialDesign, seeds: int, t_statistic: float) -> float:
    """Smallest family alpha at which ``t_statistic`` crosses this look's critical value.

    A look's level is increasing in the family alpha for Pocock-type spending, but not at a
    later look for O'Brien-Fleming-type spending (at alpha 1 it spends everything at the first
    look and nothing after), so the first crossing is bracketed on a log grid before solving."""
    raw = float(2.0 * stdtr(seeds - 1, -t_statistic))  # the level that would just reject
    if raw <= 0.0:
        return 0.0
    if design.spending == "pocock":  # level proportional to the family alpha
        return float(min(1.0, raw / design.level(seeds, 1.0)))

    def excess(log_alpha: float) -> float:
        return design.level(seeds, 10.0**log_alpha) - raw

    below = -300.0
    for log_alpha in np.linspace(-300.0, 0.0, _P_GRID):
        if excess(float(log_alpha)) >= 0.0:
            if log_alpha == below:
                return float(10.0**below)
            return float(min(1.0, 10.0 ** brentq(excess, below, float(log_alpha))))
        below = float(log_alpha)
    return 1.0


_P_GRID = 1201
"""Points of the log10-alpha grid (-300 to 0, steps of 0.25) on which :func:`_repeated_p`
brackets the first crossing."""


def _seeds_to_resolve(design: SequentialDesign, centre: float, sd: float, seeds: int) -> int | None:
    """First later look at which an interval around ``centre`` of spread ``sd`` would exclude 0
    or lie inside ±margin: the planner's estimate of what more seeds would buy."""
    for look in design.looks():
        if look <= seeds:
            continue
        half = design.detectable(look, sd)
        if abs(centre) > half or abs(centre) + half < design.margin:
            return look
    return None
