"""Simulated adaptive studies: the error rates of :mod:`.sequential`, measured without training.

A simulated study has ``contexts`` contexts (batch sizes), each comparing one baseline with
``alternatives`` alternatives on the same seeds; it runs the adaptive protocol's rounds exactly as
the runner does (a context adds seeds to the next look while any of its comparisons is
unresolved, up to ``max_seeds``) and reads the final statuses. Two data models:

- ``normal``: per-seed accuracies ``mu_arm + sd_arm z``; the paired differences of two arms
  sharing a baseline then correlate 0.5, as in a real study.
- ``binomial``: each arm's accuracy on a test set of ``test_examples`` is a binomial count of a
  per-seed success probability ``p + sd_arm z`` (clipped), over ``test_examples``: accuracies are
  discrete, differences are often identical at few seeds, and the resolution floor is exercised.

A *family error* is any wrong claim in the final statuses: ``better``/``worse`` where the true
difference is 0 or has the other sign, ``equivalent`` where it is at least the margin. Used by
the tests (``tests/analysis/test_sequential.py``) and ``benchmarks/sequential_error.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import stdtrit

from .sequential import SequentialDesign


@dataclass(frozen=True)
class SimulationResult:
    studies: int
    family_error_rate: float
    """Share of studies with at least one wrong claim."""
    decided: np.ndarray
    """Share of studies in which each comparison (context-major) ends with a correct claim of
    significance (for planted effects: the power) or of equivalence (for zero effects)."""
    mean_seeds: float
    """Mean evaluation seeds per context."""

    def monte_carlo_error(self) -> float:
        """Standard error of ``family_error_rate`` (binomial)."""
        rate = self.family_error_rate
        return float(np.sqrt(max(rate * (1.0 - rate), 1e-12) / self.studies))


def simulate(
    design: SequentialDesign,
    effects: Sequence[Sequence[float]],
    *,
    studies: int = 2000,
    sd: float = 0.01,
    model: str = "normal",
    test_examples: int = 1000,
    accuracy: float = 0.9,
    seed: int = 0,
) -> SimulationResult:
    """Run ``studies`` simulated adaptive studies.

    ``effects[c][j]``: true difference baseline - alternative ``j`` in context ``c`` (accuracy).
    ``sd``: per-arm standard deviation over seeds, so paired differences have sd ``sd * sqrt(2)``
    (a planted ``d_z`` is ``effect / (sd * sqrt(2))``). ``design.comparisons`` is replaced by the
    number of comparisons in ``effects``.
    """
    true = np.asarray(effects, dtype=np.float64)
    contexts, alternatives = true.shape
    design = replace(design, comparisons=contexts * alternatives)
    rng = np.random.default_rng(seed)
    seeds = design.max_seeds
    noise = rng.standard_normal((studies, contexts, alternatives + 1, seeds))
    if model == "normal":
        arms = sd * noise
        arms[:, :, 1:, :] -= true[None, :, :, None]
        resolution = 0.0
    elif model == "binomial":
        base = np.clip(accuracy + sd * noise, 0.0, 1.0)
        base[:, :, 1:, :] = np.clip(base[:, :, 1:, :] - true[None, :, :, None], 0.0, 1.0)
        arms = rng.binomial(test_examples, base) / test_examples
        resolution = 1.0 / test_examples
    else:
        raise ValueError(f"unknown model {model!r}")
    differences = arms[:, :, :1, :] - arms[:, :, 1:, :]  # (studies, contexts, alternatives, seeds)
    status, used = _run_rounds(design, differences, resolution)
    wrong_sign = ((status == 1) & (true <= 0)) | ((status == -1) & (true >= 0))
    wrong_equivalence = (status == 2) & (np.abs(true) >= design.margin)
    errors = (wrong_sign | wrong_equivalence).reshape(studies, -1).any(axis=1)
    correct = np.where(true == 0, status == 2, status == np.sign(true))
    return SimulationResult(
        studies,
        float(errors.mean()),
        correct.reshape(studies, -1).mean(axis=0),
        float(used.mean()),
    )


def _run_rounds(
    design: SequentialDesign, differences: np.ndarray, resolution: float
) -> tuple[np.ndarray, np.ndarray]:
    """Final status per comparison (1 better, -1 worse, 2 equivalent, 0 unresolved) and seeds
    used per context, looking as :func:`.sequential.assess` does at each look of the schedule."""
    studies, contexts, alternatives, _ = differences.shape
    status = np.zeros((studies, contexts, alternatives), dtype=np.int64)
    used = np.zeros((studies, contexts), dtype=np.int64)
    active = np.ones((studies, contexts), dtype=bool)
    for look in design.looks():
        sample = differences[..., :look]
        centre = sample.mean(axis=-1)
        spread = np.maximum(sample.std(axis=-1, ddof=1), resolution)
        level = design.level(look)
        half = -stdtrit(look - 1, level / 2.0) * spread / np.sqrt(look)
        low, high = centre - half, centre + half
        now = np.where(low > 0, 1, np.where(high < 0, -1, 0))
        now = np.where((now == 0) & (low > -design.margin) & (high < design.margin), 2, now)
        now = np.where(spread > 0, now, 0)
        status = np.where(active[..., None], now, status)
        used = np.where(active, look, used)
        active &= (status == 0).any(axis=-1)
    return status, used
