"""Training stability from plain records: rises of the smoothed loss beyond its own noise,
gradient norms, divergence, collapse, and the usable learning-rate range.

Everything here works on numbers a run already records (per-step losses, per-step gradient
norms, final train loss and accuracy, per-run validation accuracy). The per-step gradient norm
comes from :func:`global_gradient_norm` (``train/gradients.py``, re-exported here), which the
engine calls after ``loss.backward()``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from normlab.errors import NormlabError
from normlab.train.collapse import COLLAPSE_ACCURACY_MARGIN as COLLAPSE_ACCURACY_MARGIN
from normlab.train.collapse import COLLAPSE_LOSS_TOLERANCE as COLLAPSE_LOSS_TOLERANCE
from normlab.train.collapse import collapsed as collapsed
from normlab.train.engine import EXPLODED_LOSS_FACTOR
from normlab.train.gradients import global_gradient_norm as global_gradient_norm

RISE_WINDOWS = 30
"""W: a run's per-step losses are cut into W consecutive windows of (nearly) equal length, so
that a window is the same fraction of training at every batch size. Under the default equal
epochs budget a window then averages the same number of examples (steps x batch size) whatever
the batch size, and the standard error of its mean loss is set by the per-example spread, not
by the batch size: a rise of the per-example loss is as detectable at batch 2 as at batch 128."""
MIN_WINDOW_STEPS = 8
"""A window holds at least 8 steps (fewer windows for short runs), so that its variance is an
estimate (7 degrees of freedom) and not one or two numbers."""
RISE_THRESHOLD = 5.0
"""k: a window whose mean loss is more than 5 standard errors above the lowest window mean
before it is *risen*. The lowest of ~30 noisy means sits ~2 standard errors of one mean below
the rest, and short windows of a skewed per-batch loss have heavier tails than a normal: in
1,800 simulated runs of per-batch noise alone (batch 2 to 128, error rates 0.3 to 0.003,
tests/diagnostics/test_stability.py), the largest rise of any window was z = 4.6, and a
threshold of 4 flagged a window in 2 of 450 runs. A genuine instability is far above it (an lr
burst that sends a fitting run back to chance: z ~ 11)."""


@dataclass(frozen=True)
class LossRises:
    """The windows of a run's loss that rose beyond their own noise (see :func:`loss_rises`)."""

    instability: float | None
    """Fraction of the judged windows (every window but the first) that are risen: 0 for a loss
    that never rose beyond its noise, 1 for one that sat above its best all the time. None when
    the run is too short for two windows."""
    window_steps: int
    """Steps per window (the last window also takes the remainder)."""
    excursion_steps: tuple[int, ...]
    """First step of each excursion: a maximal stretch of consecutive risen windows."""
    max_rise: float | None
    """The largest rise z over the judged windows, in standard errors (negative when the loss
    only fell); None when nothing was judged."""
    threshold: float
    """The z above which a window is risen (kept with the record: it defines ``instability``)."""


def loss_rises(
    losses: Sequence[float],
    windows: int = RISE_WINDOWS,
    threshold: float = RISE_THRESHOLD,
    min_window_steps: int = MIN_WINDOW_STEPS,
) -> LossRises:
    """Where a run's smoothed loss rose above its best so far by more than its own noise.

    Cut the finite losses (those before the first non-finite one: divergence is judged by
    :func:`divergence_step`) into ``n_w = min(windows, n // min_window_steps)`` consecutive
    windows; window j has mean ``m_j``, sample variance ``s_j^2`` over its ``n_j`` steps and
    standard error ``e_j = s_j / sqrt(n_j)``. With ``b(j)`` the window of lowest mean among
    ``0..j-1``, the rise of window j is the Welch statistic

        z_j = (m_j - m_b(j)) / sqrt(e_j^2 + e_b(j)^2)

    and window j is *risen* when ``z_j > threshold``. ``instability`` is the fraction of windows
    ``1..n_w-1`` that are risen.

    Why this and not a count of per-batch spikes: a mini-batch loss at batch size B fluctuates
    by its per-example spread over sqrt(B), and near convergence a batch of two with one
    misclassified example is a "spike" whatever the norm; a count of such steps grows with the
    number of steps and with how low the loss gets. The window mean averages that noise away,
    and the rise is measured in the window's own standard errors, so ``z`` does not change when
    the loss is scaled or shifted (loss level) nor with the per-batch noise at a given batch
    size: under noise alone the loss never rises above its best by 4 standard errors, and
    ``instability`` is ~0 at every batch size. What it finds is a sustained rise of the training
    loss: an oscillating learning rate, a loss that blows up and recovers, a late divergence.
    Comparing against the best window *so far* (not the previous one) also finds a slow climb.
    A window's variance includes the loss's own fall within it, which only makes ``z`` smaller:
    a falling loss is never risen.
    """
    if windows < 2 or threshold <= 0 or min_window_steps < 2:
        raise NormlabError(
            f"loss_rises: need windows >= 2, threshold > 0 and min_window_steps >= 2, got "
            f"{windows}, {threshold}, {min_window_steps}"
        )
    values = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        values = values[: int(np.argmin(finite))]
    count = min(windows, values.size // min_window_steps)
    if count < 2:
        return LossRises(None, values.size, (), None, threshold)
    length = values.size // count
    bounds = [j * length for j in range(count)] + [values.size]
    means, errors = [], []
    for low, high in itertools.pairwise(bounds):
        window = values[low:high]
        means.append(float(window.mean()))
        errors.append(float(window.std(ddof=1)) / math.sqrt(window.size))
    best, rises, risen = 0, [], []
    for j in range(1, count):
        difference = means[j] - means[best]
        error = math.hypot(errors[j], errors[best])
        # A constant loss has no noise: any rise of it is beyond its noise.
        rise = difference / error if error > 0 else (math.inf if difference > 0 else 0.0)
        rises.append(rise)
        risen.append(rise > threshold)
        if means[j] < means[best]:
            best = j
    starts = tuple(
        bounds[j + 1] for j in range(len(risen)) if risen[j] and (j == 0 or not risen[j - 1])
    )
    return LossRises(sum(risen) / len(risen), length, starts, max(rises), threshold)


def divergence_step(
    losses: Sequence[float], num_classes: int, factor: float = EXPLODED_LOSS_FACTOR
) -> int | None:
    """First step whose loss is non-finite or above ``factor`` x ln(classes) (the engine's
    divergence criterion), None if there is none."""
    limit = factor * math.log(num_classes)
    for step, value in enumerate(losses):
        if not math.isfinite(value) or value > limit:
            return step
    return None


@dataclass(frozen=True)
class StabilityReport:
    """What one run's records say about its stability; the store keeps ``to_dict()``."""

    instability: float | None
    """Fraction of the run's loss windows that rose beyond their noise (:func:`loss_rises`)."""
    window_steps: int
    excursion_steps: tuple[int, ...]
    max_rise: float | None
    rise_threshold: float
    grad_norm_mean: float | None
    grad_norm_variance: float | None
    diverged_at: int | None
    """First step with a non-finite or exploded loss."""
    collapsed: bool
    """Finished at chance (see :func:`collapsed`); False for a run that diverged."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stability_report(
    step_losses: Sequence[float],
    grad_norms: Sequence[float],
    num_classes: int,
    *,
    final_train_loss: float | None,
    train_acc: float | None,
) -> StabilityReport:
    """Loss instability (:func:`loss_rises`), gradient-norm mean and (population) variance, divergence and collapse of a run.

    ``final_train_loss`` and ``train_acc`` are the last epoch's (None for a run that did not
    finish). Non-finite gradient norms are left out of the mean and variance.
    """
    finite = np.array([g for g in grad_norms if math.isfinite(g)], dtype=np.float64)
    diverged_at = divergence_step(step_losses, num_classes)
    finished = diverged_at is None and final_train_loss is not None and train_acc is not None
    rises = loss_rises(step_losses)
    return StabilityReport(
        instability=rises.instability,
        window_steps=rises.window_steps,
        excursion_steps=rises.excursion_steps,
        max_rise=rises.max_rise,
        rise_threshold=rises.threshold,
        grad_norm_mean=float(finite.mean()) if finite.size else None,
        grad_norm_variance=float(finite.var()) if finite.size else None,
        diverged_at=diverged_at,
        collapsed=finished and collapsed(final_train_loss, train_acc, num_classes),
    )


@dataclass(frozen=True)
class LearningRateRange:
    """The widest contiguous run of grid learning rates within ``margin`` of the best."""

    norm: str
    batch_size: int
    low: float
    high: float
    decades: float
    """log10(high / low): 0 when a single learning rate qualifies."""
    best_lr: float
    best_val_acc: float
    grid: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_lr_range(
    records: Iterable[Mapping[str, Any]], margin: float = 0.01
) -> dict[tuple[str, int], LearningRateRange]:
    """Per (norm, batch size), the widest contiguous LR interval of the grid whose validation
    accuracy (mean over seeds) is within ``margin`` of the cell's best; width in decades.

    ``records`` are plain run records with ``norm``, ``batch_size``, ``lr`` and ``val_acc``. A run
    without ``val_acc`` (diverged or failed) counts as accuracy 0: a learning rate at which a
    seed diverges is not usable. Ties in width go to the interval holding the best learning rate.
    BN's claimed benefit (Ioffe & Szegedy 2015; Bjorck et al. 2018) is a wider range.
    """
    if margin < 0:
        raise NormlabError(f"usable_lr_range: margin must be >= 0, got {margin}")
    accuracies: dict[tuple[str, int], dict[float, list[float]]] = {}
    for record in records:
        cell = (str(record["norm"]), int(record["batch_size"]))
        value = record.get("val_acc")
        accuracies.setdefault(cell, {}).setdefault(float(record["lr"]), []).append(
            0.0 if value is None else float(value)
        )
    ranges = {}
    for cell, by_lr in accuracies.items():
        grid = sorted(by_lr)
        means = [float(np.mean(by_lr[lr])) for lr in grid]
        best = int(np.argmax(means))
        usable = [mean >= means[best] - margin for mean in means]
        candidates = []  # (width, contains best, start, stop)
        start = None
        for index, ok in enumerate([*usable, False]):
            if ok and start is None:
                start = index
            elif not ok and start is not None:
                stop = index - 1
                width = math.log10(grid[stop] / grid[start])
                candidates.append((width, start <= best <= stop, start, stop))
                start = None
        width, _, start, stop = max(candidates)
        ranges[cell] = LearningRateRange(
            norm=cell[0],
            batch_size=cell[1],
            low=grid[start],
            high=grid[stop],
            decades=width,
            best_lr=grid[best],
            best_val_acc=means[best],
            grid=tuple(grid),
        )
    return ranges
