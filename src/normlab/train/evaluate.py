"""Accuracy of a model with a chosen statistics mode, and the batches PreciseBN reads.

``running``: eval mode, normalization layers use their running (EMA) statistics — what a deployed
model does. ``batch``: normalization layers compute statistics of each test mini-batch (train
mode) while dropout stays off and no running statistic is touched; the mini-batches are drawn as
training draws them (``data.evaluation_batches``: the run's sampler and ``classes_per_batch``,
a fixed seed), never in stored order, which is often class-sorted. The gap between the two is
the first BN diagnostic: how far the EMA statistics are from what the network was trained with.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from normlab.data import Dataset, evaluation_batches, evaluation_permutation

from .config import RunConfig

STATISTICS_MODES = ("running", "batch")


@torch.no_grad()
def predict_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(dim=1) == y).sum())


def chunks(num_examples: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of ``batch_size``; a trailing chunk of one joins the previous one."""
    bounds = list(range(0, num_examples, batch_size)) + [num_examples]
    ranges = list(zip(bounds[:-1], bounds[1:], strict=True))
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < 2:
        ranges[-2:] = [(ranges[-2][0], num_examples)]
    return ranges


def batch_statistics_view(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose norms use batch statistics and whose dropout is off."""
    view = copy.deepcopy(model)
    view.train()
    for module in view.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    return view


def precise_batches(
    x: torch.Tensor, batch_size: int, max_examples: int | None = None
) -> Iterator[torch.Tensor]:
    """PreciseBN's batches over ``x``: the first ``max_examples`` (default all) of a fixed,
    seeded permutation (``data.evaluation_permutation``), in that order, in batches of
    ``batch_size`` (a trailing batch of one joins the previous one). Drawn lazily: over a
    large training set only one batch is copied at a time."""
    order = evaluation_permutation(len(x))[:max_examples]
    for start, stop in chunks(len(order), batch_size):
        yield x[order[start:stop].to(x.device)]


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    statistics: str = "running",
    batch_size: int = 512,
    *,
    sampler: str = "shuffle",
    classes_per_batch: int | None = None,
) -> float:
    """Fraction of ``x`` classified as ``y`` using ``statistics`` (``running`` or ``batch``).

    With ``batch`` statistics, ``batch_size``, ``sampler`` and ``classes_per_batch`` should be
    the training run's: every example is evaluated once, in a mini-batch drawn as training
    draws them (``data.evaluation_batches``), so that each sees the statistic noise the network
    was trained with. ``model`` itself is left unchanged.
    """
    if statistics not in STATISTICS_MODES:
        raise ValueError(f"statistics must be one of {STATISTICS_MODES}, got {statistics!r}")
    was_training = model.training
    if statistics == "batch":
        evaluated = batch_statistics_view(model)
        batches = evaluation_batches(
            len(y), batch_size, sampler, labels=y, classes_per_batch=classes_per_batch
        )
        correct = 0
        for index in batches:
            index = index.to(y.device)
            correct += predict_correct(evaluated, x[index], y[index])
    else:
        evaluated = model.eval()
        correct = sum(
            predict_correct(evaluated, x[start:stop], y[start:stop])
            for start, stop in chunks(len(y), batch_size)
        )
    model.train(was_training)
    return correct / len(y)


@torch.no_grad()
def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Mean cross-entropy of ``model`` on ``x`` in eval mode (running statistics); ``model`` is
    left in the mode it was in."""
    was_training = model.training
    model.eval()
    total = sum(
        float(F.cross_entropy(model(x[start:stop]), y[start:stop], reduction="sum"))
        for start, stop in chunks(len(y), batch_size)
    )
    model.train(was_training)
    return total / len(y)


def batch_statistics_test_accuracy(model: nn.Module, dataset: Dataset, config: RunConfig) -> float:
    """Test accuracy of ``model`` with batch statistics, batches drawn as ``config`` trained
    (its batch size, sampler and ``classes_per_batch``)."""
    return accuracy(
        model,
        dataset.x_test,
        dataset.y_test,
        statistics="batch",
        batch_size=config.batch_size,
        sampler=config.sampler,
        classes_per_batch=config.classes_per_batch,
    )
