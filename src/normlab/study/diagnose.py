"""The diagnostics a study records for each run, computed in the worker right after training.

:func:`after_training_for` turns the kinds of :attr:`~.work.Execution.diagnostics` into the
engine's ``after_training`` callback (``train`` may not import ``diagnostics``; the study layer
supplies it). Every kind is a plain JSON-able dict in ``RunResult.diagnostics``, one store row
per run and kind:

- ``stability`` (default): loss instability (rises of the smoothed loss beyond its noise),
  gradient-norm mean and variance, divergence step and collapse, from the run's per-step trace (:func:`normlab.diagnostics.stability_report`);
- ``gap`` (default, runs with running-statistics layers only): test accuracy with the EMA
  running statistics, with PreciseBN population statistics and with batch statistics at the
  training batch size (:class:`normlab.diagnostics.GapReport`); the EMA and batch-statistics
  accuracies are the run's own (no second pass), only the PreciseBN pass is paid, over at most
  :data:`PRECISE_MAX_EXAMPLES` training examples, and its seconds are in the record;
- ``noise`` (when the spec asks): batch-statistic noise per BN layer over the training set
  (:func:`normlab.diagnostics.batch_stat_noise`);
- ``variance_shift`` (when the spec asks): dropout variance shift at every BN with dropout
  upstream, and its test-accuracy cost (:func:`normlab.diagnostics.variance_shift`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from torch import nn

from normlab.data import Dataset
from normlab.diagnostics import (
    GapReport,
    batch_stat_noise,
    precise_copy,
    stability_report,
    variance_shift,
)
from normlab.diagnostics.layers import batch_norm_layers
from normlab.train import RunConfig, accuracy
from normlab.train.engine import AfterTraining
from normlab.train.evaluate import batch_statistics_test_accuracy
from normlab.train.result import TrainingTrace

DEFAULT_DIAGNOSTICS = ("gap", "stability")
"""Recorded for every run of every study."""
OPTIONAL_DIAGNOSTICS = ("noise", "variance_shift")
"""Recorded when the spec asks (``[study] diagnostics = [...]``)."""
DIAGNOSTIC_KINDS = (*DEFAULT_DIAGNOSTICS, *OPTIONAL_DIAGNOSTICS)

PRECISE_MAX_EXAMPLES = 1024
"""Training examples the PreciseBN pass of ``gap`` goes over (a fixed random subset of the
training split, ``data.evaluation_permutation``: its first examples can be a few classes of a
class-sorted source). Wu & Johnson (2021) find population statistics converge within ~10^4
examples on ImageNet; digits' whole training split (1,078) is just above this cap, and a
32x32 set of thousands is cut to it so that the pass stays a small fraction of a run."""


def after_training_for(kinds: Sequence[str]) -> AfterTraining | None:
    """The engine callback recording ``kinds`` for each run (None when ``kinds`` is empty)."""
    if not kinds:
        return None
    return functools.partial(diagnose_run, kinds=tuple(kinds))


def diagnose_run(
    config: RunConfig,
    model: nn.Module,
    dataset: Dataset,
    trace: TrainingTrace,
    *,
    kinds: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """The records of ``kinds`` for one trained run (see the module docstring); a run that did
    not finish gets its ``stability`` record only."""
    records: dict[str, dict[str, Any]] = {}
    if "stability" in kinds:
        records["stability"] = stability_report(
            trace.step_losses,
            trace.grad_norms,
            dataset.num_classes,
            final_train_loss=trace.final_train_loss,
            train_acc=trace.final_train_acc,
            train_examples=trace.final_train_examples,
        ).to_dict()
    if not trace.finished or not batch_norm_layers(model):
        return records  # the other kinds measure layers with batch / running statistics
    if "gap" in kinds and config.batch_size >= 2:
        records["gap"] = _gap(config, model, dataset, trace).to_dict()
    if "noise" in kinds:
        records["noise"] = batch_stat_noise(
            model,
            dataset.x_train,
            seed=config.seed,
            labels=dataset.y_train,
            sampler=config.sampler,
            classes_per_batch=config.classes_per_batch,
        ).to_dict()
    if "variance_shift" in kinds:
        records["variance_shift"] = variance_shift(
            model,
            dataset.x_train,
            x_eval=dataset.x_test,
            y_eval=dataset.y_test,
            batch_size=config.batch_size,
            seed=config.seed,
        ).to_dict()
    return records


def _gap(config: RunConfig, model: nn.Module, dataset: Dataset, trace: TrainingTrace) -> GapReport:
    """:func:`normlab.diagnostics.inference_gap` reusing the run's own test accuracies (and the
    PreciseBN accuracy when its pack computed it for all its runs in one pass)."""
    if trace.precise_test_acc is not None:
        precise_acc, seconds = trace.precise_test_acc, trace.precise_seconds or 0.0
    else:
        precise, seconds = precise_copy(
            model, dataset.x_train, config.batch_size, PRECISE_MAX_EXAMPLES
        )
        precise_acc = accuracy(precise, dataset.x_test, dataset.y_test)
    running = trace.test_acc
    if running is None:
        running = accuracy(model, dataset.x_test, dataset.y_test)
    batch = trace.test_acc_batch_stats
    if batch is None:
        batch = batch_statistics_test_accuracy(model, dataset, config)
    return GapReport(
        running_acc=running,
        precise_acc=precise_acc,
        batch_acc=batch,
        batch_size=config.batch_size,
        precise_seconds=seconds,
        precise_examples=min(len(dataset.y_train), PRECISE_MAX_EXAMPLES),
    )
