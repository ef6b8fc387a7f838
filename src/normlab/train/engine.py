"""Train one run from its config: build model, build optimizer, loop, record, return a result.

Reads top to bottom like nanoGPT's train.py. Divergence (a non-finite loss, or a loss beyond
``EXPLODED_LOSS_FACTOR`` x ln(classes), i.e. confidently wrong on every example, before an
update; a non-finite validation loss after the last one) ends the run as ``diverged``: a result,
not a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from normlab.data import (
    Dataset,
    augment_batch,
    batches_per_epoch,
    check_sampler,
    epoch_order,
    load_dataset,
)
from normlab.errors import NormlabError
from normlab.models import INITS as INITS  # re-exported: study/checks.py reads the valid inits
from normlab.models import MODELS, check_init, model_options, resnet, seed_dropout
from normlab.norms import norm_entry, uses_batch_statistics

from .agc import adaptive_clip_gradients, check_clipping
from .collapse import collapsed
from .config import RunConfig
from .conv_guard import guard_strided_pointwise_convolutions
from .device import dataset_on
from .evaluate import accuracy, batch_statistics_test_accuracy, mean_loss
from .gradients import global_gradient_norm
from .model_ref import build_model_from_ref, check_model_ref
from .optim import build_optimizer, build_scheduler
from .result import EpochRecord, RunResult, TrainingTrace

EXPLODED_LOSS_FACTOR = 100.0

AfterTraining = Callable[[RunConfig, nn.Module, Dataset, TrainingTrace], dict[str, dict[str, Any]]]
"""Called once per run after training: (config, the run's trained model, dataset, trace) ->
diagnostic records by kind, which become ``RunResult.diagnostics``. It must not change the
model. Diverged runs are passed too, with ``trace.finished`` False: then only the trace is
meaningful (the model may hold non-finite or, packed, untrained weights). The study layer supplies it
(``normlab.study.diagnose``): ``train`` computes no diagnostics itself."""


def check_config(config: RunConfig, dataset: Dataset) -> None:
    """Refuse configurations that cannot train, with a message naming the value at fault."""
    num_train = len(dataset.y_train)
    batches_per_epoch(num_train, config.batch_size)
    if config.batch_size == 1 and uses_batch_statistics(config.norm):
        raise NormlabError(
            f"norm={config.norm!r} computes batch statistics and cannot train with batch_size=1; "
            "use batch_size >= 2 or a per-sample norm (ln, gn, none)"
        )
    if config.lr <= 0 or not math.isfinite(config.lr):
        raise NormlabError(f"lr must be a positive number, got {config.lr}")
    if config.epochs < 1 and config.steps is None:
        raise NormlabError(f"epochs must be >= 1, got {config.epochs}")
    if config.steps is not None and config.steps < 1:
        raise NormlabError(f"steps must be >= 1, got {config.steps}")
    if config.model == "resnet":
        check_init(config.init, config.norm)
    elif config.init != "default":
        raise NormlabError(
            f"init={config.init!r} applies to the seed ResNet (model 'resnet') only, not to "
            f"model {config.model!r}"
        )
    if config.agc_clip is not None:
        check_clipping(config.agc_clip)
    check_sampler(config.sampler)
    if config.classes_per_batch is not None:
        # The sampler refuses what it cannot draw (k above the classes, batch below k, ...).
        epoch_order(
            config.seed,
            0,
            num_train,
            config.batch_size,
            config.sampler,
            labels=dataset.y_train,
            classes_per_batch=config.classes_per_batch,
        )
    if config.bn_momentum is not None and not 0.0 < config.bn_momentum <= 1.0:
        raise NormlabError(f"bn_momentum must be in (0, 1], got {config.bn_momentum}")
    model_norm_options(config)
    model_build_options(config)


def model_build_options(config: RunConfig) -> dict[str, Any]:
    """Options a model other than ``resnet`` is built with: ``dropout`` for built-ins taking it.

    A factory's model is the user's: a ``dropout`` normlab cannot pass is refused, not ignored.
    """
    if config.model == "resnet":
        return {}
    check_model_ref(config.model)
    if config.model in MODELS and "dropout" in model_options(config.model):
        return {"dropout": config.dropout}
    if config.dropout > 0:
        raise NormlabError(
            f"dropout={config.dropout} cannot be applied to model {config.model!r}: only "
            "built-in models take it; put the dropout in the model"
        )
    return {}


def model_norm_options(config: RunConfig) -> dict[str, Any]:
    """The options the run's norm is built with: ``norm_options``, plus ``momentum=bn_momentum``
    when ``bn_momentum`` is set and the norm updates running statistics with a momentum (the
    registry's ``running_momentum``; other norms, ``frozen_bn`` included, ignore it)."""
    options = dict(config.norm_options)
    if config.bn_momentum is None:
        return options
    if "momentum" in options:
        raise NormlabError(
            f"bn_momentum={config.bn_momentum} and norm_options.momentum={options['momentum']} "
            "both set the running-statistics momentum; set one"
        )
    if norm_entry(config.norm).running_momentum:
        options["momentum"] = config.bn_momentum
    return options


def build_model(config: RunConfig, dataset: Dataset) -> nn.Module:
    """The run's model, initialized from the global RNG (seeded by the caller); dropout masks of
    normlab's models come from a stream of their own seeded by ``config.seed``
    (``models/dropout.py``), so that a packed engine draws the same masks.

    ``model="resnet"``: the seed-block ResNet from depth, widths, dropout, dropout_position and
    init. Any other model reference goes through :func:`build_model_from_ref` with the run's
    norm and :func:`model_norm_options` (those fields then do not apply, but ``dropout`` does
    for built-ins that take it).
    """
    if config.model != "resnet":
        model = build_model_from_ref(
            config.model,
            num_classes=dataset.num_classes,
            in_channels=dataset.in_channels,
            input_shape=dataset.input_shape,
            norm=config.norm,
            norm_options=model_norm_options(config),
            **model_build_options(config),
        )
        seed_dropout(model, config.seed)
        guard_strided_pointwise_convolutions(model)
        return model
    model = resnet(
        norm=config.norm,
        depth=config.depth,
        widths=config.widths,
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        dropout=config.dropout,
        dropout_position=config.dropout_position,
        norm_options=model_norm_options(config),
        init=config.init,
    )
    seed_dropout(model, config.seed)
    return model


def total_steps(config: RunConfig, num_examples: int) -> int:
    """Optimizer steps of the run: ``steps`` if set, else ``epochs`` x full batches per epoch."""
    if config.steps is not None:
        return config.steps
    return config.epochs * batches_per_epoch(num_examples, config.batch_size)


def train_run(
    config: RunConfig,
    dataset: Dataset | None = None,
    *,
    weights_path: Path | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    after_training: AfterTraining | None = None,
    device: str = "cpu",
) -> RunResult:
    """Train ``config`` on ``dataset`` (loaded from the config if not given) and evaluate it.

    ``weights_path``: if given, the final state dict is saved there (``torch.save``; load it with
    ``weights_only=True``). ``device``: ``cpu`` or ``cuda`` (``device.resolve_device``). Same
    config and seed give the same numbers on the same machine. Every step's loss and gradient
    norm go into a :class:`TrainingTrace` handed to ``after_training`` (see
    :data:`AfterTraining`); a finished run is judged ``collapsed``
    (:func:`~normlab.train.collapse.collapsed`) from its last epoch.
    """
    dataset = dataset or load_dataset(config.dataset, **config.dataset_options)
    check_config(config, dataset)
    dataset = dataset_on(dataset, device)
    torch.manual_seed(config.seed)
    model = build_model(config, dataset).to(device)
    optimizer = build_optimizer(model, config)
    x_train, y_train = dataset.x_train, dataset.y_train
    steps_total = total_steps(config, len(y_train))
    scheduler = build_scheduler(optimizer, config, steps_total)
    exploded = EXPLODED_LOSS_FACTOR * math.log(dataset.num_classes)

    epochs: list[EpochRecord] = []
    trace = TrainingTrace()
    step, epoch, train_time = 0, 0, 0.0
    while step < steps_total:
        started = time.perf_counter()
        model.train()
        loss_sum = correct_sum = seen = 0.0
        order = epoch_order(
            config.seed,
            epoch,
            len(y_train),
            config.batch_size,
            config.sampler,
            labels=y_train,
            classes_per_batch=config.classes_per_batch,
        )
        for batch in order:
            x, y = x_train[batch], y_train[batch]
            if config.augment:
                x = augment_batch(x, config.seed, step)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss_value = loss.item()
            trace.step_losses.append(loss_value)
            if not math.isfinite(loss_value) or loss_value > exploded:
                result = diverged_result(
                    config,
                    step,
                    epochs,
                    train_time + _since(started),
                    training_loss_error(loss_value, step),
                )
                return with_diagnostics(result, after_training, config, model, dataset, trace)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trace.grad_norms.append(global_gradient_norm(model))
            if config.agc_clip is not None:
                adaptive_clip_gradients(model, config.agc_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += loss_value * len(y)
            correct_sum += float((logits.detach().argmax(dim=1) == y).sum())
            seen += len(y)
            if step == steps_total:
                break
        train_time += _since(started)
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_acc=correct_sum / seen,
            val_acc=accuracy(model, dataset.x_val, dataset.y_val),
            lr=optimizer.param_groups[0]["lr"],
        )
        epochs.append(record)
        if on_epoch is not None:
            on_epoch(record)
        epoch += 1

    # The loss is checked before each update, so the last update is judged on validation data;
    # only a non-finite loss counts there: a large eval-mode loss can be BN's EMA statistics.
    final_loss = mean_loss(model, dataset.x_val, dataset.y_val)
    if not math.isfinite(final_loss):
        result = diverged_result(
            config, step, epochs, train_time, validation_loss_error(final_loss, step)
        )
        return with_diagnostics(result, after_training, config, model, dataset, trace)
    if weights_path is not None:
        torch.save(model.state_dict(), weights_path)
    test_acc = accuracy(model, dataset.x_test, dataset.y_test)
    # With a norm whose training-mode forward is its eval-mode forward, the batch-statistics
    # pass computes the same function as the eval pass (its dropout is off, and the ResNet has
    # no other mode-dependent layer): skip it, at a small batch size hundreds of forwards.
    if norm_entry(config.norm).train_equals_eval:
        test_acc_batch_stats = test_acc
    else:
        test_acc_batch_stats = batch_statistics_test_accuracy(model, dataset, config)
    last = epochs[-1]
    trace.finished = True
    trace.final_train_loss, trace.final_train_acc = last.train_loss, last.train_acc
    trace.final_train_examples = int(seen)  # the last epoch's, behind its train accuracy
    trace.test_acc, trace.test_acc_batch_stats = test_acc, test_acc_batch_stats
    result = RunResult(
        run_id=config.run_id,
        status="done",
        test_acc=test_acc,
        test_acc_batch_stats=test_acc_batch_stats,
        val_acc=last.val_acc,
        train_loss=last.train_loss,
        train_acc=last.train_acc,
        steps=step,
        wall_time=train_time,
        images_per_sec=step * config.batch_size / train_time if train_time > 0 else 0.0,
        epochs=epochs,
        collapsed=collapsed(
            last.train_loss, last.train_acc, dataset.num_classes, trace.final_train_examples
        ),
    )
    return with_diagnostics(result, after_training, config, model, dataset, trace)


def weights_file(weights_dir: Path | None, config: RunConfig) -> Path | None:
    """Where a run's final weights are kept: ``weights_dir/<run_id>.pt`` (None: not kept)."""
    return None if weights_dir is None else Path(weights_dir) / f"{config.run_id}.pt"


def with_diagnostics(
    result: RunResult,
    after_training: AfterTraining | None,
    config: RunConfig,
    model: nn.Module,
    dataset: Dataset,
    trace: TrainingTrace,
) -> RunResult:
    """``result`` with the records of ``after_training`` (unchanged when there is none)."""
    if after_training is None:
        return result
    return replace(result, diagnostics=after_training(config, model, dataset, trace))


def training_loss_error(loss_value: float, step: int) -> str:
    """The error text of a run whose training loss diverged before update ``step``."""
    return f"loss {loss_value:.4g} at step {step} (non-finite or above the explosion threshold)"


def validation_loss_error(final_loss: float, step: int) -> str:
    """The error text of a run whose validation loss is non-finite after its last update."""
    return f"validation loss {final_loss:.4g} after the last step {step} (non-finite)"


def _since(started: float) -> float:
    return time.perf_counter() - started


def diverged_result(
    config: RunConfig, step: int, epochs: list[EpochRecord], wall_time: float, error: str
) -> RunResult:
    """The result of a run that diverged at ``step`` (alone or in a pack) with ``error``."""
    return RunResult(
        run_id=config.run_id,
        status="diverged",
        steps=step,
        wall_time=wall_time,
        epochs=list(epochs),
        error=error,
    )
