"""Training stability from plain records: loss spikes, gradient norms, divergence, collapse, and
the usable learning-rate range.

Everything here works on numbers a run already records (per-step losses, per-step gradient
norms, final train loss and accuracy, per-run validation accuracy). The per-step gradient norm
comes from :func:`global_gradient_norm` (``train/gradients.py``, re-exported here), which the
engine calls after ``loss.backward()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import median
from typing import Any

import numpy as np

from normlab.errors import NormlabError
from normlab.train.collapse import COLLAPSE_ACCURACY_MARGIN as COLLAPSE_ACCURACY_MARGIN
from normlab.train.collapse import COLLAPSE_BAND_Z as COLLAPSE_BAND_Z
from normlab.train.collapse import collapsed as collapsed
from normlab.train.engine import EXPLODED_LOSS_FACTOR
from normlab.train.gradients import global_gradient_norm as global_gradient_norm

SPIKE_FACTOR = 2.0
"""k: a step's loss above k x the running median is a spike. 2 means the loss doubled against
its recent typical value: SGD noise at a fixed batch size moves a per-batch cross-entropy by
tens of percent, not by a factor of two (on the synthetic curve of the tests, noise of 15% gives
no false spike)."""
SPIKE_WINDOW = 20
"""w: the running median is over the previous 20 steps (the step itself excluded), long enough
for the median to ignore a spike of a few steps, short enough to follow the falling loss."""


def loss_spikes(
    losses: Sequence[float], factor: float = SPIKE_FACTOR, window: int = SPIKE_WINDOW
) -> tuple[int, ...]:
    """Steps where a loss spike starts: ``loss[t] > factor * median(loss[t - window : t])``.

    The first ``window`` steps are not judged (no full median yet, and the loss falls fastest
    there); consecutive spiking steps are one spike (reported at its first step); non-finite
    losses are divergence, not spikes, and are skipped.
    """
    if factor <= 1 or window < 1:
        raise NormlabError(f"loss_spikes: need factor > 1 and window >= 1, got {factor}, {window}")
    starts: list[int] = []
    previous_spiking = False
    for step in range(window, len(losses)):
        recent = [value for value in losses[step - window : step] if math.isfinite(value)]
        value = losses[step]
        spiking = bool(recent) and math.isfinite(value) and value > factor * median(recent)
        if spiking and not previous_spiking:
            starts.append(step)
        previous_spiking = spiking
    return tuple(starts)


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

    spikes: int
    spike_steps: tuple[int, ...]
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
    train_examples: int | None = None,
) -> StabilityReport:
    """Spikes, gradient-norm mean and (population) variance, divergence and collapse of a run.

    ``final_train_loss`` and ``train_acc`` are the last epoch's (None for a run that did not
    finish), ``train_examples`` the examples that accuracy was counted over (collapse is judged
    against chance with a binomial band for that many; :func:`collapsed`). Non-finite gradient
    norms are left out of the mean and variance.
    """
    finite = np.array([g for g in grad_norms if math.isfinite(g)], dtype=np.float64)
    diverged_at = divergence_step(step_losses, num_classes)
    finished = diverged_at is None and final_train_loss is not None and train_acc is not None
    spikes = loss_spikes(step_losses)
    return StabilityReport(
        spikes=len(spikes),
        spike_steps=spikes,
        grad_norm_mean=float(finite.mean()) if finite.size else None,
        grad_norm_variance=float(finite.var()) if finite.size else None,
        diverged_at=diverged_at,
        collapsed=finished and collapsed(final_train_loss, train_acc, num_classes, train_examples),
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
