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

Two packers build the pack's model (:func:`build_packed`): the channel packer
(``packed_model.py``: K runs along the channel axis, layer by layer) for the write-up's ResNet
and the CIFAR ResNets, where it is the faster; the general packer (``packed_func.py``: stacked
parameters and buffers through the model's own forward under ``torch.vmap``) for every other
model. Both take (N, K*C, ...) inputs and give (K, N, classes) logits, so the loop below serves
both.

Data: each run's own ``epoch_order`` (``classes_per_batch`` included) and augmentation
(``augment_batch``'s crop and flip with the run's seed and step), served by ``packed_data.py``;
evaluation of all K runs in one packed forward per chunk: ``packed_eval.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parameter import UninitializedTensorMixin

from normlab.data import Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.models import CifarResNet, ResNet
from normlab.norms import make_norm, norm_entry, packing_problem

from .collapse import collapsed
from .config import RunConfig
from .device import dataset_on
from .engine import (
    EXPLODED_LOSS_FACTOR,
    AfterTraining,
    build_model,
    check_config,
    diverged_result,
    model_norm_options,
    total_steps,
    training_loss_error,
    with_diagnostics,
)
from .evaluate import chunks
from .gradients import packed_gradient_norms
from .optim import learning_rate_factor
from .packed_data import RunStreams, packed_batches
from .packed_eval import correct_counts, finish, precise_test_accuracies
from .packed_func import FunctionalPackedModel, PackRefused, vmap_problem
from .packed_func_precise import func_precise_test_accuracies
from .packed_model import PackedModel
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

CHANNEL_PACKED_MODELS = ("resnet", "resnet20", "resnet32", "resnet56")
"""Architectures the channel packer (``packed_model.py``) trains: the write-up's ResNet and the
CIFAR ResNets, where it is faster than the general packer at small batches
(``benchmarks/bench_packed_func.py --compare``, docs/BENCHMARKS.md: 6.5x against 4.7x alone
at batch 2 on 8x8 images for ``resnet``, 1.65x against 1.49x for ResNet-20 on 32x32). Every other
model the study can build trains through the general packer (``packed_func.py``)."""

CHANNEL_PACKED_CLASSES: tuple[type[torch.nn.Module], ...] = (ResNet, CifarResNet)
"""The classes those names build (a name registered again from Python builds something else,
which then takes the general packer)."""


def can_pack(config: RunConfig) -> tuple[bool, str]:
    """Whether ``config`` can train inside a pack, and why not when it cannot."""
    model = getattr(config, "model", "resnet")
    entry = norm_entry(config.norm)
    if model not in CHANNEL_PACKED_MODELS:
        if entry.vmap_problem is not None:
            return False, f"norm {config.norm!r} cannot be packed: {entry.vmap_problem}"
        if config.agc_clip is not None:
            return False, "agc_clip is not packed yet"
        return True, ""
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


def build_packed(
    configs: Sequence[RunConfig], dataset: Dataset
) -> tuple[PackedModel | FunctionalPackedModel, list[torch.nn.Module]]:
    """The pack's model, and each run's own model as built alone (``engine.build_model`` after
    ``torch.manual_seed(seed)``, as ``train_run``): the channel packer for
    ``CHANNEL_PACKED_MODELS``, the general packer for any other model. The global RNG state
    each build leaves is the stream the run's plain ``nn.Dropout`` layers draw from alone
    (``packed_func.py``).

    :class:`PackRefused` (its runs then train alone) for a model the general packer cannot
    train exactly: lazy parameters, or a first forward vmap refuses (:func:`vmap_problem`)."""
    models, states = [], []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, dataset))
        states.append(torch.get_rng_state())
    entry = norm_entry(configs[0].norm)
    if configs[0].model in CHANNEL_PACKED_MODELS:
        if type(models[0]) in CHANNEL_PACKED_CLASSES:
            return PackedModel(models, entry.packing), models
        if entry.vmap_problem is not None:
            raise PackRefused(f"norm {configs[0].norm!r} cannot be packed: {entry.vmap_problem}")
    lazy = [
        name
        for name, tensor in [*models[0].named_parameters(), *models[0].named_buffers()]
        if isinstance(tensor, UninitializedTensorMixin)
    ]
    if lazy:
        raise PackRefused(
            f"model {configs[0].model!r} cannot be packed: {lazy[0]} is lazy (initialized by the "
            "first training step, from the global stream)"
        )
    packed = FunctionalPackedModel(models, states)
    sample = dataset.x_train[: configs[0].batch_size].cpu()  # the models are on the CPU here
    problem = vmap_problem(packed, sample.repeat(1, len(configs), *([1] * (sample.dim() - 2))))
    if problem is not None:
        raise PackRefused(f"model {configs[0].model!r} cannot be packed: {problem}")
    return packed, models


def train_packed(
    configs: Sequence[RunConfig],
    dataset: Dataset | None = None,
    *,
    weights_paths: Sequence[Path | None] | None = None,
    after_training: AfterTraining | None = None,
    device: str = "cpu",
    precise_examples: int | None = None,
) -> list[RunResult]:
    """Train the K compatible ``configs`` as one packed model; one result per config, in order.

    ``weights_paths``: where to save each finished run's state dict (as ``train_run`` does for
    one run; its run's own model layout, loadable into ``build_model``), or None.
    ``after_training``: as in ``train_run``, per run, on the run's own model (its slice unpacked
    into it) with the run's own trace of step losses and gradient norms. ``device``: ``cpu`` or
    ``cuda`` (:func:`~normlab.train.device.resolve_device`). ``precise_examples``: also give each
    finished run's trace its test accuracy after PreciseBN over that many training images, from
    one pass over the whole pack (``packed_eval.precise_test_accuracies``), for a diagnostic
    that would otherwise recalibrate run by run.
    """
    check_pack(configs)
    dataset = dataset or load_dataset(configs[0].dataset, **configs[0].dataset_options)
    for config in configs:
        check_config(config, dataset)
    dataset = dataset_on(dataset, device)
    count = len(configs)
    packed, models = build_packed(configs, dataset)
    packed = packed.to(device)
    if device != "cpu" and isinstance(packed, FunctionalPackedModel) and packed.global_dropout:
        raise PackRefused(
            f"model {configs[0].model!r} has nn.Dropout layers, whose masks a run alone draws "
            f"from the {device} stream: packed runs draw them on the CPU"
        )
    initial_buffers = {name: b.clone() for name, b in packed.named_buffers()}
    parameters = packed.stacked_parameters()
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
    streams = RunStreams(configs, dataset.y_train)

    results: list[RunResult | None] = [None] * count
    curves: list[list[EpochRecord]] = [[] for _ in configs]
    traces = [TrainingTrace() for _ in configs]
    live = [True] * count
    # Per-run sums of the epoch so far, in float64 as train_run's Python floats.
    loss_sums = torch.zeros(count, dtype=torch.float64, device=device)
    correct = torch.zeros(count, dtype=torch.long, device=device)
    seen = [0] * count
    last_seen = [0] * count  # examples behind each run's last recorded train accuracy
    step, train_time = 0, 0.0
    while step < steps_total and any(live):
        started = time.perf_counter()
        packed.train()
        index = streams.take(steps_total - step)
        xs, ys = packed_batches(dataset.x_train, dataset.y_train, index, configs, step)
        for x, y in zip(xs, ys, strict=True):
            logits = packed(x)
            losses = F.cross_entropy(
                logits.reshape(count * batch_size, -1), y.reshape(-1), reduction="none"
            )
            losses = losses.view(count, batch_size).mean(dim=1)
            values = losses.tolist()  # the one synchronization of the step
            for k, value in enumerate(values):
                if live[k]:
                    traces[k].step_losses.append(value)
            diverged = [
                k
                for k, value in enumerate(values)
                if live[k] and (not math.isfinite(value) or value > exploded)
            ]
            for k in diverged:
                live[k] = False
                results[k] = diverged_result(
                    configs[k],
                    step,
                    curves[k],
                    (train_time + _since(started)) / count,
                    training_loss_error(values[k], step),
                )
            if not any(live):
                break
            optimizer.zero_grad()
            # Only live runs' losses: a diverged run's gradient is not wanted (its slice is
            # zeroed below); the others' gradients are their own whatever it holds.
            if all(live):
                total = losses.sum()
            else:
                total = losses[[k for k in range(count) if live[k]]].sum()
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
            loss_sums += losses.detach().double() * batch_size
            correct += (logits.detach().argmax(dim=2) == y).sum(dim=1)
        train_time += _since(started)
        seen = [n + len(index) * batch_size for n in seen]
        if not any(live):
            break
        ended = [e or step == steps_total for e in streams.ended()]
        recording = [k for k in range(count) if ended[k] and results[k] is None]
        if recording:
            packed.eval()
            val_correct = correct_counts(
                packed, dataset.x_val, dataset.y_val, chunks(len(dataset.y_val), 512)
            )
            # What LambdaLR leaves in the run's param group after this epoch's last step.
            for k in recording:
                config = configs[k]
                last_seen[k] = seen[k]
                curves[k].append(
                    EpochRecord(
                        epoch=streams.epochs[k],
                        train_loss=float(loss_sums[k]) / seen[k],
                        train_acc=float(correct[k]) / seen[k],
                        val_acc=val_correct[k] / len(dataset.y_val),
                        lr=config.lr * learning_rate_factor(config.schedule, step, steps_total),
                    )
                )
        for k in range(count):
            if ended[k]:
                loss_sums[k], correct[k], seen[k] = 0.0, 0, 0
        streams.advance()
    finished = finish(
        configs, dataset, packed, models, results, curves, step, train_time, weights_paths
    )
    precise = None
    if precise_examples and any(r.status == "done" for r in finished):
        if isinstance(packed, FunctionalPackedModel):
            precise = func_precise_test_accuracies(packed, dataset, batch_size, precise_examples)
        else:
            precise = precise_test_accuracies(
                packed, models[0], dataset, batch_size, precise_examples
            )
    judged = []
    for k, result in enumerate(finished):
        result = dataclasses.replace(result, pack_size=count, device=device)
        if result.status == "done":
            last = curves[k][-1]
            packed.unpack_into(k, models[k])
            result = dataclasses.replace(
                result,
                collapsed=collapsed(
                    last.train_loss, last.train_acc, dataset.num_classes, last_seen[k]
                ),
            )
            traces[k].finished = True
            traces[k].final_train_loss, traces[k].final_train_acc = last.train_loss, last.train_acc
            traces[k].final_train_examples = last_seen[k]
            traces[k].test_acc = result.test_acc
            traces[k].test_acc_batch_stats = result.test_acc_batch_stats
            if precise is not None:
                traces[k].precise_test_acc = precise[0][k]
                traces[k].precise_seconds = precise[1] / count
                traces[k].precise_examples = min(precise_examples, len(dataset.y_train))
        # A run that did not finish gets its own model untrained: only its trace is meaningful.
        judged.append(
            with_diagnostics(result, after_training, configs[k], models[k], dataset, traces[k])
        )
    return judged


def _since(started: float) -> float:
    return time.perf_counter() - started
