"""Evaluation of a packed model: every run's accuracy and loss from one packed forward per
chunk (the evaluation images replicated into every run's slice), and each run's final result
with the same meaning as ``engine.train_run``'s."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from normlab.data import Dataset, evaluation_batches
from normlab.norms import norm_entry
from normlab.surgery import recalibrate_bn, recalibration_targets

from .config import RunConfig
from .engine import diverged_result, validation_loss_error
from .evaluate import chunks, precise_batches
from .packed_func import FunctionalPackedModel, RunDropout
from .packed_model import PackedDropout, PackedModel
from .result import EpochRecord, RunResult


def _replicate(x: torch.Tensor, count: int) -> torch.Tensor:
    """The same evaluation images in every run's slice: (n, C, ...) -> (n, K*C, ...)."""
    return x.repeat(1, count, *([1] * (x.dim() - 2)))


@torch.no_grad()
def correct_counts(
    packed: PackedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    batches: Sequence[tuple[int, int] | torch.Tensor],
) -> list[int]:
    """Examples of ``x`` each run classifies as ``y``, over ``batches`` (``[start, stop)`` ranges
    or index tensors), in the mode ``packed`` is in (eval: running statistics; train: batch
    statistics of each batch)."""
    total = torch.zeros(packed.count, dtype=torch.long, device=y.device)
    for batch in batches:
        if isinstance(batch, torch.Tensor):
            index = batch.to(y.device)
            inputs, targets = x[index], y[index]
        else:
            inputs, targets = x[batch[0] : batch[1]], y[batch[0] : batch[1]]
        logits = packed(_replicate(inputs, packed.count))
        total += (logits.argmax(dim=2) == targets).sum(dim=1)
    return total.tolist()


@torch.no_grad()
def mean_losses(packed: PackedModel, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Each run's mean eval-mode cross-entropy on ``x`` (``evaluate.mean_loss`` per run)."""
    packed.eval()
    totals = [0.0] * packed.count
    for start, stop in chunks(len(y), 512):
        logits = packed(_replicate(x[start:stop], packed.count))
        target = y[start:stop].repeat(packed.count)
        sums = F.cross_entropy(logits.reshape(len(target), -1), target, reduction="none")
        for k, value in enumerate(sums.view(packed.count, -1).sum(dim=1).tolist()):
            totals[k] += value
    return [total / len(y) for total in totals]


def precise_test_accuracies(
    packed: PackedModel, model: torch.nn.Module, dataset: Dataset, batch_size: int, examples: int
) -> tuple[list[float], float] | None:
    """Every run's test accuracy after PreciseBN, from one pass over the pack, and its seconds.

    The pass is :func:`~normlab.surgery.recalibrate_bn` on a copy of ``packed`` over
    ``examples`` training images of a fixed permutation in batches of ``batch_size``
    (``evaluate.precise_batches``), replicated into every run's slice: each run's layers see
    exactly the batches they see when the run alone is recalibrated
    (``diagnostics.precise_copy``). None (the caller recalibrates run by run) when the packed
    layers are not one stacked layer per layer of a run's own ``model``."""
    own, stacked = recalibration_targets(model), recalibration_targets(packed)
    if not own or len(own) != len(stacked):
        return None
    pairs = zip(own, stacked, strict=True)
    if any(p.num_features != packed.count * o.num_features for o, p in pairs):
        return None
    started = time.perf_counter()
    precise = copy.deepcopy(packed)
    batches = (
        _replicate(batch, packed.count)
        for batch in precise_batches(dataset.x_train, batch_size, examples)
    )
    recalibrate_bn(precise, batches)
    precise.eval()
    test_ranges = chunks(len(dataset.y_test), 512)
    correct = correct_counts(precise, dataset.x_test, dataset.y_test, test_ranges)
    return [c / len(dataset.y_test) for c in correct], time.perf_counter() - started


def _batch_statistics_view(packed: PackedModel) -> PackedModel:
    """``evaluate.batch_statistics_view`` for a packed model: norms in training mode on a copy
    (no running statistic of ``packed`` moves), dropout off."""
    view = copy.deepcopy(packed)
    view.train()
    modules = view.layer_modules() if isinstance(view, FunctionalPackedModel) else view.modules()
    for module in modules:
        if isinstance(module, (PackedDropout, RunDropout)):
            module.eval()
    return view


def finish(
    configs: Sequence[RunConfig],
    dataset: Dataset,
    packed: PackedModel,
    models: list[torch.nn.Module],
    results: list[RunResult | None],
    curves: list[list[EpochRecord]],
    step: int,
    train_time: float,
    weights_paths: Sequence[Path | None] | None,
) -> list[RunResult]:
    """Judge the last update on validation data, then test every run still standing."""
    count = len(configs)
    wall_time = train_time / count
    pending = [k for k in range(count) if results[k] is None]
    if not pending:
        return results  # type: ignore[return-value]
    final_losses = mean_losses(packed, dataset.x_val, dataset.y_val)
    packed.eval()
    test_ranges = chunks(len(dataset.y_test), 512)
    test_correct = correct_counts(packed, dataset.x_test, dataset.y_test, test_ranges)
    batch_correct = test_correct
    if not norm_entry(configs[0].norm).train_equals_eval:
        # Batches drawn as training draws them (sampler and classes_per_batch are shared by
        # the pack; the draw's seed is fixed), as evaluate.accuracy draws them for a run alone.
        batches = evaluation_batches(
            len(dataset.y_test),
            configs[0].batch_size,
            configs[0].sampler,
            labels=dataset.y_test,
            classes_per_batch=configs[0].classes_per_batch,
        )
        view = _batch_statistics_view(packed)
        batch_correct = correct_counts(view, dataset.x_test, dataset.y_test, batches)
    num_test = len(dataset.y_test)
    for k in pending:
        config = configs[k]
        if not math.isfinite(final_losses[k]):
            results[k] = diverged_result(
                config, step, curves[k], wall_time, validation_loss_error(final_losses[k], step)
            )
            continue
        if weights_paths is not None and weights_paths[k] is not None:
            packed.unpack_into(k, models[k])
            torch.save(models[k].state_dict(), weights_paths[k])
        results[k] = RunResult(
            run_id=config.run_id,
            status="done",
            test_acc=test_correct[k] / num_test,
            test_acc_batch_stats=batch_correct[k] / num_test,
            val_acc=curves[k][-1].val_acc,
            train_loss=curves[k][-1].train_loss,
            train_acc=curves[k][-1].train_acc,
            steps=step,
            wall_time=wall_time,
            images_per_sec=step * config.batch_size / wall_time if wall_time > 0 else 0.0,
            epochs=curves[k],
        )
    return results  # type: ignore[return-value]
