"""Packed training: K compatible runs trained as ONE grouped model, with the results of each run
equal (within float32 rounding) to what ``engine.train_run`` gives it alone.

Small batches leave a CPU idle: a step of batch 2 costs about the same fixed overhead as a step
of batch 32 (``benchmarks/bench_engine.py``). Stacking K runs along the channel axis
(``packed_model.py``; in the spirit of HFTA, Wang et al., MLSys 2021, which fuses repeated jobs
on GPUs) pays that overhead once per K runs. Per run, as alone:

- initial weights: each run's model is built alone with its seed (``engine.build_model``) and
  copied into its slice;
- data: the run's own ``epoch_order``; dropout: the run's own mask stream;
- optimizer: exactly SGD / AdamW with the run's learning rate, schedule, momentum and weight
  decay (``packed_optim.py``); the loss is the sum of the runs' mean cross-entropies, so the
  gradient of each slice is its own run's;
- divergence: checked before each update on the run's own loss, as the engine does, with the
  same error text; a diverged run leaves the pack (its loss excluded, its slice zeroed and
  frozen) and the others go on unchanged;
- metrics: epoch curves, validation accuracy, test accuracy with running and with batch
  statistics at the run's batch size; ``wall_time`` is the pack's training time / K.

Per-run augmentation, when the data issue adds it, is one call per slice on the gathered batch
(``augment_batch(x_k, seed_k, step)``) before the slices are interleaved; see ``_epoch_batches``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from normlab.data import Dataset, epoch_order, load_dataset
from normlab.errors import NormlabError
from normlab.norms import make_norm, norm_entry, packing_problem

from .collapse import collapsed
from .config import RunConfig
from .engine import (
    EXPLODED_LOSS_FACTOR,
    AfterTraining,
    build_model,
    check_config,
    model_norm_options,
    total_steps,
    training_loss_error,
    validation_loss_error,
    with_diagnostics,
)
from .evaluate import chunks
from .gradients import packed_gradient_norms
from .optim import learning_rate_factor
from .packed_model import PackedDropout, PackedModel
from .packed_optim import PackedOptimizer
from .result import EpochRecord, RunResult, TrainingTrace

PER_RUN_FIELDS = (
    "seed",
    "lr",
    "weight_decay",
    "momentum",
    "dropout",
    "norm_weight_decay",
    "schedule",
    "bn_momentum",
)
"""Config fields runs of one pack may differ in (bn_momentum through the norm's options: runs
whose norms end up with the same running momentum pack together)."""

PACKABLE_MODELS = ("resnet",)
"""Architectures the packer handles (``RunConfig.model``; today's configs have none: resnet)."""


def can_pack(config: RunConfig) -> tuple[bool, str]:
    """Whether ``config`` can train inside a pack, and why not when it cannot."""
    model = getattr(config, "model", "resnet")
    if model not in PACKABLE_MODELS:
        return False, f"model {model!r} has no packed form (packed: {', '.join(PACKABLE_MODELS)})"
    entry = norm_entry(config.norm)
    if entry.packing is None:
        return False, f"norm {config.norm!r} declares no packed form"
    if config.init != "default":
        return False, f"init={config.init!r} is not packed yet (its scalars are per run)"
    if config.agc_clip is not None:
        return False, "agc_clip is not packed yet"
    try:
        layer = make_norm(config.norm, config.widths[0], **model_norm_options(config))
    except NormlabError as error:
        return False, str(error)
    problem = packing_problem(layer)
    if problem is not None:
        return False, f"norm {config.norm!r}: {problem}"
    return True, ""


def pack_key(config: RunConfig) -> str | None:
    """Configs with equal keys can share a pack; None when ``config`` cannot be packed.

    The key is every field but those runs may differ in (``PER_RUN_FIELDS``), plus the norm's
    effective options (running momentum included) and the optimizer: SGD and AdamW keep
    different state, so they never share a pack. Unknown future fields are in the key, so a
    new field never lets incompatible runs share a pack.
    """
    if not can_pack(config)[0]:
        return None
    shared = {k: v for k, v in config.to_dict().items() if k not in PER_RUN_FIELDS}
    shared["effective_norm_options"] = model_norm_options(config)
    return json.dumps(shared, sort_keys=True, separators=(",", ":"), default=str)


def check_pack(configs: Sequence[RunConfig]) -> str:
    """The pack key shared by ``configs``; a :class:`NormlabError` naming the run at fault."""
    if not configs:
        raise NormlabError("a pack needs at least one run")
    keys = [pack_key(config) for config in configs]
    for config, key in zip(configs, keys, strict=True):
        if key is None:
            raise NormlabError(f"run {config.run_id} cannot be packed: {can_pack(config)[1]}")
        if key != keys[0]:
            raise NormlabError(
                f"run {config.run_id} differs from run {configs[0].run_id} in more than "
                f"{', '.join(PER_RUN_FIELDS)}: they cannot share a pack"
            )
    return keys[0]


def train_packed(
    configs: Sequence[RunConfig],
    dataset: Dataset | None = None,
    *,
    weights_paths: Sequence[Path | None] | None = None,
    after_training: AfterTraining | None = None,
) -> list[RunResult]:
    """Train the K compatible ``configs`` as one packed model; one result per config, in order.

    ``weights_paths``: where to save each finished run's state dict (as ``train_run`` does for
    one run; its run's own model layout, loadable into ``build_model``), or None.
    ``after_training``: as in ``train_run``, per run, on the run's own model (its slice unpacked
    into it) with the run's own trace of step losses and gradient norms.
    """
    check_pack(configs)
    dataset = dataset or load_dataset(configs[0].dataset, **configs[0].dataset_options)
    for config in configs:
        check_config(config, dataset)
    count = len(configs)
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, dataset))
    packed = PackedModel(models, norm_entry(configs[0].norm).packing)
    initial_buffers = {name: b.clone() for name, b in packed.named_buffers()}
    parameters = dict(packed.network.named_parameters())
    own_dimensions = {name: p.ndim for name, p in models[0].named_parameters()}
    steps_total = total_steps(configs[0], len(dataset.y_train))
    optimizer = PackedOptimizer(
        list(parameters.values()),
        [own_dimensions[name] > 1 for name in parameters],
        configs,
        steps_total,
    )
    exploded = EXPLODED_LOSS_FACTOR * math.log(dataset.num_classes)
    batch_size = configs[0].batch_size

    results: list[RunResult | None] = [None] * count
    curves: list[list[EpochRecord]] = [[] for _ in configs]
    traces = [TrainingTrace() for _ in configs]
    live = torch.ones(count)
    step, epoch, train_time = 0, 0, 0.0
    while step < steps_total and live.any():
        started = time.perf_counter()
        packed.train()
        loss_sums, seen = [0.0] * count, 0
        correct = torch.zeros(count, dtype=torch.long)
        for x, y in _epoch_batches(configs, dataset, epoch):
            logits = packed(x)
            losses = F.cross_entropy(
                logits.reshape(count * batch_size, -1), y.reshape(-1), reduction="none"
            )
            losses = losses.view(count, batch_size).mean(dim=1)
            values = losses.tolist()
            for k, value in enumerate(values):
                if live[k]:
                    traces[k].step_losses.append(value)
            diverged = [
                k
                for k, value in enumerate(values)
                if live[k] and (not math.isfinite(value) or value > exploded)
            ]
            for k in diverged:
                live[k] = 0.0
                results[k] = _diverged_result(
                    configs[k],
                    step,
                    curves[k],
                    (train_time + _since(started)) / count,
                    training_loss_error(values[k], step),
                )
            if not live.any():
                break
            optimizer.zero_grad()
            # Only live runs' losses: a diverged run's gradient is not wanted (its slice is
            # zeroed below); the others' gradients are their own whatever it holds.
            total = losses.sum() if not diverged and live.all() else losses[live.bool()].sum()
            total.backward()
            norms = packed_gradient_norms(parameters.values(), count)
            for k in range(count):
                if live[k]:
                    traces[k].grad_norms.append(norms[k])
            for k in diverged:
                optimizer.freeze(k)
                packed.reset_buffers(k, initial_buffers)
            optimizer.step()
            step += 1
            for k, value in enumerate(values):
                loss_sums[k] += value * batch_size
            correct += (logits.detach().argmax(dim=2) == y).sum(dim=1)
            seen += batch_size
            if step == steps_total:
                break
        train_time += _since(started)
        if not live.any():
            break
        packed.eval()
        val_correct = _correct(
            packed, dataset.x_val, dataset.y_val, chunks(len(dataset.y_val), 512)
        )
        # What LambdaLR leaves in the run's param group after this epoch's last step.
        learning_rates = [
            c.lr * learning_rate_factor(c.schedule, step, steps_total) for c in configs
        ]
        for k in range(count):
            if results[k] is None:
                curves[k].append(
                    EpochRecord(
                        epoch=epoch,
                        train_loss=loss_sums[k] / seen,
                        train_acc=float(correct[k]) / seen,
                        val_acc=val_correct[k] / len(dataset.y_val),
                        lr=learning_rates[k],
                    )
                )
        epoch += 1
    results = _finish(
        configs, dataset, packed, models, results, curves, step, train_time, weights_paths
    )
    for k, result in enumerate(results):
        if result.status == "done":
            packed.unpack_into(k, models[k])
            last = curves[k][-1]
            traces[k].finished = True
            traces[k].final_train_loss, traces[k].final_train_acc = last.train_loss, last.train_acc
            traces[k].test_acc = result.test_acc
            traces[k].test_acc_batch_stats = result.test_acc_batch_stats
        # A run that did not finish gets its own model untrained: only its trace is meaningful.
        results[k] = with_diagnostics(
            result, after_training, configs[k], models[k], dataset, traces[k]
        )
    return results


def _epoch_batches(configs: Sequence[RunConfig], dataset: Dataset, epoch: int):
    """Yield the packed batches of ``epoch``: x (N, K*C, H, W) with run k's mini-batch in
    channels ``[k*C, (k+1)*C)``, and y (K, N). Each run's order is its own ``epoch_order``."""
    x_train, y_train = dataset.x_train, dataset.y_train
    first = configs[0]
    orders = torch.stack(
        [
            epoch_order(
                config.seed, epoch, len(y_train), first.batch_size, first.sampler, labels=y_train
            )
            for config in configs
        ]
    )  # (K, batches, N)
    count, batches, batch_size = orders.shape
    # One gather per epoch; then every step's x is a contiguous slice (no per-step copy).
    x_epoch = (
        x_train[orders]
        .permute(1, 2, 0, 3, 4, 5)
        .reshape(batches, batch_size, count * x_train.shape[1], *x_train.shape[2:])
    )
    y_epoch = y_train[orders].transpose(0, 1).contiguous()  # (batches, K, N)
    for index in range(batches):
        yield x_epoch[index], y_epoch[index]


def _replicate(x: torch.Tensor, count: int) -> torch.Tensor:
    """The same evaluation images in every run's slice: (n, C, ...) -> (n, K*C, ...)."""
    return x.repeat(1, count, *([1] * (x.dim() - 2)))


@torch.no_grad()
def _correct(
    packed: PackedModel, x: torch.Tensor, y: torch.Tensor, ranges: list[tuple[int, int]]
) -> list[int]:
    """Examples of ``x`` each run classifies as ``y``, over the chunks ``ranges``, in the mode
    ``packed`` is in (eval: running statistics; train: batch statistics of each chunk)."""
    total = torch.zeros(packed.count, dtype=torch.long)
    for start, stop in ranges:
        logits = packed(_replicate(x[start:stop], packed.count))
        total += (logits.argmax(dim=2) == y[start:stop]).sum(dim=1)
    return total.tolist()


@torch.no_grad()
def _mean_losses(packed: PackedModel, x: torch.Tensor, y: torch.Tensor) -> list[float]:
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


def _batch_statistics_view(packed: PackedModel) -> PackedModel:
    """``evaluate.batch_statistics_view`` for a packed model: norms in training mode on a copy
    (no running statistic of ``packed`` moves), dropout off."""
    view = copy.deepcopy(packed)
    view.train()
    for module in view.modules():
        if isinstance(module, PackedDropout):
            module.eval()
    return view


def _finish(
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
    final_losses = _mean_losses(packed, dataset.x_val, dataset.y_val)
    packed.eval()
    test_ranges = chunks(len(dataset.y_test), 512)
    test_correct = _correct(packed, dataset.x_test, dataset.y_test, test_ranges)
    batch_correct = test_correct
    if not norm_entry(configs[0].norm).train_equals_eval:
        batch_ranges = chunks(len(dataset.y_test), configs[0].batch_size)
        view = _batch_statistics_view(packed)
        batch_correct = _correct(view, dataset.x_test, dataset.y_test, batch_ranges)
    num_test = len(dataset.y_test)
    for k in pending:
        config = configs[k]
        if not math.isfinite(final_losses[k]):
            results[k] = _diverged_result(
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
            collapsed=collapsed(
                curves[k][-1].train_loss, curves[k][-1].train_acc, dataset.num_classes
            ),
        )
    return results  # type: ignore[return-value]


def _diverged_result(
    config: RunConfig, step: int, epochs: list[EpochRecord], wall_time: float, error: str
) -> RunResult:
    return RunResult(
        run_id=config.run_id,
        status="diverged",
        steps=step,
        wall_time=wall_time,
        epochs=list(epochs),
        error=error,
    )


def _since(started: float) -> float:
    return time.perf_counter() - started
