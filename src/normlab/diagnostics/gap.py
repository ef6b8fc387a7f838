"""Inference-statistics gap, and the decomposition of a BN deficit.

The same weights are evaluated three ways (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm", Sec. 3-4):

(a) ``running``: eval mode with the EMA running statistics, what a deployed model does;
(b) ``precise``: eval mode with PreciseBN population statistics (``surgery.recalibrate_bn`` on a
    copy, over the training inputs in a fixed random order, in batches of the training batch
    size so that upstream layers normalize as in training);
(c) ``batch``: every norm with the statistics of its test mini-batch at the training batch size,
    the batches drawn as training draws them (``train.evaluate.accuracy(statistics="batch")``
    with the run's sampler), what the network was trained with.

Neither pass reads the data in stored order (``data.evaluation_order``): on a class-sorted source
the first training examples hold a few classes, and consecutive test examples form batches of
one class.

(a) - (b) is what the EMA costs (it lags the weights and is dominated by the last batches);
(b) - (c) is what population statistics cost against the batch noise training adapted to.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.surgery import recalibrate_bn
from normlab.train.evaluate import accuracy, precise_batches


@dataclass(frozen=True)
class GapReport:
    """Accuracy of one set of weights under three choices of normalization statistics."""

    running_acc: float
    """(a) eval mode, EMA running statistics."""
    precise_acc: float
    """(b) eval mode, PreciseBN population statistics over the training inputs."""
    batch_acc: float
    """(c) batch statistics at the training batch size, dropout off."""
    batch_size: int
    precise_seconds: float
    """Wall time of the PreciseBN pass (copy + recalibration), the cost per run."""
    precise_examples: int
    """Training examples the PreciseBN pass went through."""

    @property
    def statistics_gap(self) -> float:
        """(a) - (b): negative when the EMA statistics cost accuracy that PreciseBN recovers."""
        return self.running_acc - self.precise_acc

    @property
    def batch_gap(self) -> float:
        """(a) - (c): eval mode against train-mode (batch-statistics) accuracy."""
        return self.running_acc - self.batch_acc

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "statistics_gap": self.statistics_gap,
            "batch_gap": self.batch_gap,
        }


def precise_copy(
    model: nn.Module, x_train: torch.Tensor, batch_size: int, max_examples: int | None = None
) -> tuple[nn.Module, float]:
    """A copy of ``model`` recalibrated by PreciseBN over ``x_train`` (its first
    ``max_examples`` in a fixed random order, default all: ``train.evaluate.precise_batches``)
    in batches of ``batch_size``, and the seconds it took (copy included). ``model`` is not
    touched."""
    started = time.perf_counter()
    patched = copy.deepcopy(model)
    recalibrate_bn(patched, precise_batches(x_train, batch_size, max_examples))
    return patched, time.perf_counter() - started


def inference_gap(
    model: nn.Module,
    x_train: torch.Tensor,
    x_eval: torch.Tensor,
    y_eval: torch.Tensor,
    batch_size: int,
    *,
    max_examples: int | None = None,
    sampler: str = "shuffle",
    classes_per_batch: int | None = None,
) -> GapReport:
    """Accuracy on (``x_eval``, ``y_eval``) with (a) running, (b) PreciseBN and (c) batch
    statistics at ``batch_size`` (the training batch size; ``sampler`` and
    ``classes_per_batch`` the training run's, for the batches of (c)). ``model`` is left
    unchanged.

    PreciseBN goes over ``max_examples`` of ``x_train`` drawn at random (default all; Wu &
    Johnson find about 10^4 examples enough) and its wall time is reported in
    ``precise_seconds``.
    """
    if batch_size < 2:
        raise NormlabError(f"inference_gap: batch_size must be >= 2, got {batch_size}")
    running_acc = accuracy(model, x_eval, y_eval)
    precise, seconds = precise_copy(model, x_train, batch_size, max_examples)
    batch_acc = accuracy(
        model,
        x_eval,
        y_eval,
        statistics="batch",
        batch_size=batch_size,
        sampler=sampler,
        classes_per_batch=classes_per_batch,
    )
    return GapReport(
        running_acc=running_acc,
        precise_acc=accuracy(precise, x_eval, y_eval),
        batch_acc=batch_acc,
        batch_size=batch_size,
        precise_seconds=seconds,
        precise_examples=len(x_train) if max_examples is None else min(len(x_train), max_examples),
    )


@dataclass(frozen=True)
class Decomposition:
    """A BN deficit split into optimization + inference statistics + generalization (exact sum).

    With ``deficit = alternative_test_acc - bn_test_acc`` (positive: BN is worse; BN's test
    accuracy with its running statistics, as reported) and train accuracies measured the same
    way for both runs (the last epoch's running mean, training mode):

    - ``optimization = alternative_train_acc - bn_train_acc``: how much less of the training set
      BN fits. Accuracy, not loss, so that the three terms add up in one unit; the train-loss
      difference (nats, ``bn_train_loss - alternative_train_loss``) is kept as its evidence: a
      loss difference that changes no prediction costs no accuracy.
    - ``inference_statistics = precise_acc - running_acc``: what BN's EMA statistics cost at
      test time, recovered by PreciseBN (the issue's (a) - (b), sign flipped to count as a
      deficit).
    - ``generalization = deficit - optimization - inference_statistics``
      ``= (bn_train_acc - precise_acc) - (alternative_train_acc - alternative_test_acc)``: how
      much larger BN's train-to-test gap is with exact statistics (batch-noise regularization,
      train/test mode mismatch beyond the EMA, overfitting).
    """

    deficit: float
    optimization: float
    inference_statistics: float
    generalization: float
    train_loss_difference: float
    """bn_train_loss - alternative_train_loss (nats): > 0 when BN optimizes worse."""
    alternative: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decompose(
    gap: GapReport,
    *,
    bn_train_loss: float,
    bn_train_acc: float,
    alternative_test_acc: float,
    alternative_train_loss: float,
    alternative_train_acc: float,
    alternative: str,
) -> Decomposition:
    """Split BN's deficit against the best alternative norm at the same batch size.

    ``gap`` is BN's :func:`inference_gap` on the test set (its ``running_acc`` is BN's reported
    test accuracy); the other values come from the two runs' records. See
    :class:`Decomposition` for exactly what each term is.
    """
    deficit = alternative_test_acc - gap.running_acc
    optimization = alternative_train_acc - bn_train_acc
    inference_statistics = gap.precise_acc - gap.running_acc
    return Decomposition(
        deficit=deficit,
        optimization=optimization,
        inference_statistics=inference_statistics,
        generalization=deficit - optimization - inference_statistics,
        train_loss_difference=bn_train_loss - alternative_train_loss,
        alternative=alternative,
    )
