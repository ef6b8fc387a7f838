"""The doctor's checks. Each measures one thing on the model (or reads one setting) and returns
the findings the measurement supports: none when it shows no problem. Thresholds are stated
next to each check; the model passed in is never changed (measurements run on copies or with
every flag and buffer restored)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.distributed as distributed
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from .findings import Finding
from .gap import inference_gap
from .layers import batch_norm_layers
from .noise import NoiseReport, batch_stat_noise, expected_mean_error
from .variance_shift import variance_shift

NOISE_THRESHOLD = expected_mean_error(16)
"""0.20: a layer whose mini-batch mean is off by more than this (in units of the population
standard deviation, E|mu_B - mu| / sigma) is as noisy as a BN fed by independent examples at
batch 16, the size below which BN's accuracy drops (Wu & He 2018, Fig. 1)."""
ACCURACY_GAP_FLOOR = 0.02
"""Accuracy gaps are reported above max(2 points, two binomial standard errors)."""
VARIANCE_SHIFT_THRESHOLD = 0.9
"""A BN whose inference input variance is below 0.9 x (or above 1/0.9 x) its training one:
dropout with p >= 0.1 right before it (Li et al. 2019 see the accuracy fall from there)."""


@dataclass(frozen=True)
class WeightDecaySetting:
    """Weight decay as configured (normlab's ``weight_decay`` and ``norm_weight_decay``)."""

    weight_decay: float
    norm_weight_decay: bool = True
    """Whether the decay also applies to norm scales/shifts (PyTorch's optimizers do)."""


def _top(errors: dict[str, float], count: int = 3) -> dict[str, float]:
    return dict(sorted(errors.items(), key=lambda item: -item[1])[:count])


def noise_at(report: NoiseReport, batch_size: int) -> tuple[dict[str, float], bool]:
    """Per layer, the mean's relative error at ``batch_size``: measured if it was, else
    extrapolated from the largest measured size along the layer's fitted slope (True)."""
    if batch_size in report.batch_sizes:
        index = report.batch_sizes.index(batch_size)
        return {layer.name: layer.mean_error[index] for layer in report.layers}, False
    errors = {}
    for layer in report.layers:
        slope = layer.slope if layer.slope is not None else -0.5
        errors[layer.name] = layer.mean_error[-1] * (batch_size / report.batch_sizes[-1]) ** slope
    return errors, True


def check_batch_noise(report: NoiseReport, batch_size: int) -> list[Finding]:
    """BN at per-step batch B whose statistic noise exceeds :data:`NOISE_THRESHOLD`."""
    if not report.layers or not report.batch_sizes:
        return []
    errors, extrapolated = noise_at(report, batch_size)
    noisy = {name: error for name, error in errors.items() if error > NOISE_THRESHOLD}
    if not noisy:
        return []
    mean_error = sum(errors.values()) / len(errors)
    return [
        Finding(
            code="bn-batch-noise",
            title=(
                f"BN at batch {batch_size}: mini-batch means off by up to "
                f"{max(noisy.values()):.2f} sigma in {len(noisy)} of {len(errors)} layers"
            ),
            evidence={
                "batch_size": batch_size,
                "threshold": NOISE_THRESHOLD,
                "mean_error_all_layers": mean_error,
                "noisiest_layers": _top(noisy),
                "layers_above_threshold": len(noisy),
                "layers": len(errors),
                "mean_slope": report.mean_slope,
                "extrapolated": extrapolated,
            },
            fix=(
                "raise the per-step batch size, or replace BN by a batch-independent norm "
                "(normlab.swap_norm(model, 'gn')), or at least in the noisiest (late, small "
                "spatial) layers; frozen_bn if fine-tuning from good statistics"
            ),
            severity="warning",
        )
    ]


def check_ema_horizon(
    model: nn.Module, batch_size: int, num_train_examples: int | None
) -> list[Finding]:
    """EMA horizon 1/momentum steps longer than an epoch: the running statistics average over
    weights from more than an epoch back, so at the end of training they lag the weights."""
    if num_train_examples is None:
        return []
    steps_per_epoch = max(1, num_train_examples // batch_size)
    long = {
        name: 1.0 / module.momentum
        for name, module in batch_norm_layers(model)
        if module.track_running_stats
        and module.momentum  # None: cumulative average, 0: fixed
        and 1.0 / module.momentum > steps_per_epoch
    }
    if not long:
        return []
    horizon = max(long.values())
    return [
        Finding(
            code="ema-horizon",
            title=(
                f"BN running statistics average over {horizon:.0f} steps, "
                f"{horizon / steps_per_epoch:.1f} epochs of {steps_per_epoch} steps"
            ),
            evidence={
                "horizon_steps": horizon,
                "steps_per_epoch": steps_per_epoch,
                "epochs_in_horizon": horizon / steps_per_epoch,
                "layers": len(long),
                "momentum": 1.0 / horizon,
            },
            fix=(
                f"recalibrate after training (PreciseBN: normlab.recalibrate_bn, or doctor "
                f"--fix precise_bn), or set momentum >= 1/{steps_per_epoch} = "
                f"{1.0 / steps_per_epoch:.3g} (PyTorch convention)"
            ),
            severity="info",
        )
    ]


def _tolerance(accuracy: float, count: int) -> float:
    return max(ACCURACY_GAP_FLOOR, 2.0 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / count))


def check_eval_gap(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> list[Finding]:
    """Eval-mode accuracy below train-mode (batch statistics) or PreciseBN accuracy by more than
    :data:`ACCURACY_GAP_FLOOR` or two standard errors; PreciseBN's recovery is the evidence."""
    gap = inference_gap(model, x, x, y, batch_size)
    best = max(gap.batch_acc, gap.precise_acc)
    tolerance = _tolerance(best, len(y))
    if best - gap.running_acc <= tolerance:
        return []
    recovered = gap.precise_acc - gap.running_acc
    fix = (
        "recalibrate the running statistics (doctor --fix precise_bn, or normlab.recalibrate_bn "
        "over ~10^4 training inputs at the training batch size): that recovers "
        f"{recovered:+.3f}"
    )
    if recovered < (gap.batch_acc - gap.running_acc) / 2:
        fix = (
            f"PreciseBN recovers only {recovered:+.3f}: the network relies on batch statistics "
            "at this batch size; train with a batch-independent norm (gn) or a larger batch, "
            "or evaluate with batch statistics"
        )
    return [
        Finding(
            code="eval-train-gap",
            title=(
                f"eval() accuracy {gap.running_acc:.3f} vs {gap.batch_acc:.3f} with batch "
                f"statistics at batch {batch_size}; PreciseBN gives {gap.precise_acc:.3f}"
            ),
            evidence={**gap.to_dict(), "tolerance": tolerance, "examples": len(y)},
            fix=fix,
            severity="warning",
        )
    ]


def check_dropout_before_bn(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> list[Finding]:
    """BN layers whose input variance shifts by dropout upstream beyond
    :data:`VARIANCE_SHIFT_THRESHOLD` (measured, with the accuracy it costs)."""
    if not any(isinstance(m, _DropoutNd) and m.p > 0 for m in model.modules()):
        return []
    report = variance_shift(model, x, x_eval=x, y_eval=y, batch_size=batch_size)
    shifted = [
        layer
        for layer in report.layers
        if not VARIANCE_SHIFT_THRESHOLD <= layer.ratio <= 1 / VARIANCE_SHIFT_THRESHOLD
    ]
    if not shifted:
        return []
    worst = min(shifted, key=lambda layer: layer.ratio)
    return [
        Finding(
            code="dropout-before-bn",
            title=(
                f"dropout upstream of {len(shifted)} BN layer(s) shifts their input variance "
                f"to {worst.ratio:.2f}x in inference ({worst.name}, keep {worst.keep_probability:.2f})"
            ),
            evidence={
                "ratios": {layer.name: layer.ratio for layer in shifted},
                "dropouts": sorted({layer.dropout for layer in shifted}),
                "running_acc": report.running_acc,
                "precise_inference_acc": report.precise_acc,
                "accuracy_cost": report.accuracy_cost,
            },
            fix=(
                "move dropout after the last BN (before the classifier), as Li et al. 2019 "
                "recommend; meanwhile recompute the statistics with dropout off (doctor --fix "
                f"precise_bn): {report.accuracy_cost:+.3f} accuracy here"
            ),
            severity="warning",
        )
    ]


def _norm_parameters(model: nn.Module) -> dict[int, str]:
    return {
        id(parameter): f"{name}.{attribute}"
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        for attribute, parameter in module.named_parameters(recurse=False)
        if parameter.requires_grad
    }


def check_norm_weight_decay(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    setting: WeightDecaySetting | None,
) -> list[Finding]:
    """Weight decay applied to BN scales and shifts, from the optimizer's parameter groups or
    from the configured setting."""
    norm_parameters = _norm_parameters(model)
    decayed: dict[str, float] = {}
    if optimizer is not None:
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0.0) > 0:
                for parameter in group["params"]:
                    if id(parameter) in norm_parameters:
                        decayed[norm_parameters[id(parameter)]] = group["weight_decay"]
    elif setting is not None and setting.weight_decay > 0 and setting.norm_weight_decay:
        decayed = {name: setting.weight_decay for name in norm_parameters.values()}
    if not decayed:
        return []
    return [
        Finding(
            code="weight-decay-on-norm",
            title=(
                f"weight decay {max(decayed.values()):g} applies to {len(decayed)} BN "
                "scale/shift parameters"
            ),
            evidence={
                "parameters": len(decayed),
                "of_norm_parameters": len(norm_parameters),
                "weight_decay": sorted(set(decayed.values())),
                "examples": sorted(decayed)[:3],
            },
            fix=(
                "exempt 1-D parameters from decay (normlab.train.parameter_groups(model, wd, "
                "norm_weight_decay=False), or norm_weight_decay = false in a study), as timm "
                "and detectron2 do: decaying gamma shrinks BN's output scale, which the "
                "following layers must undo"
            ),
            severity="info",
        )
    ]


def check_frozen_updating(model: nn.Module, x: torch.Tensor, batch_size: int) -> list[Finding]:
    """BN layers whose parameters are frozen but whose running statistics still move in
    ``model.train()``: measured by one training-mode forward on a copy."""
    suspects = [
        name
        for name, module in batch_norm_layers(model)
        if module.affine
        and not any(p.requires_grad for p in module.parameters(recurse=False))
        and module.track_running_stats
        and module.momentum != 0
    ]
    if not suspects:
        return []
    probe = copy.deepcopy(model).train()
    before = {name: probe.get_submodule(name).running_mean.clone() for name in suspects}
    with torch.no_grad():
        probe(x[: max(2, batch_size)])
    drift = {
        name: float((probe.get_submodule(name).running_mean - before[name]).abs().max())
        for name in suspects
    }
    moved = {name: value for name, value in drift.items() if value > 0}
    if not moved:
        return []
    in_train_mode = [name for name in moved if model.get_submodule(name).training]
    return [
        Finding(
            code="frozen-bn-updating",
            title=(
                f"{len(moved)} BN layer(s) have frozen parameters but their running statistics "
                f"move in train(): running_mean changed by up to {max(moved.values()):.3g} in "
                "one forward"
            ),
            evidence={
                "layers": len(moved),
                "largest_drift": _top(moved),
                "in_train_mode_now": len(in_train_mode),
                "momentum": sorted({str(model.get_submodule(n).momentum) for n in moved}),
            },
            fix=(
                "freeze them for real: doctor --fix freeze_bn (normlab.freeze_bn, frozen_bn "
                "layers), or call .eval() on these layers after every model.train()"
            ),
            severity="warning",
        )
    ]


def check_grad_accumulation(
    report: NoiseReport, batch_size: int, accumulation: int
) -> list[Finding]:
    """Gradient accumulation with BN: statistics see B examples, not B x N."""
    if accumulation <= 1 or not report.layers or not report.batch_sizes:
        return []
    effective = batch_size * accumulation
    at_step, extrapolated_step = noise_at(report, batch_size)
    at_effective, extrapolated_effective = noise_at(report, effective)
    worst = max(at_step, key=at_step.get)
    return [
        Finding(
            code="grad-accumulation-bn",
            title=(
                f"gradient accumulation x{accumulation}: BN statistics see {batch_size} "
                f"examples, not {effective} (mean error {at_step[worst]:.2f} vs "
                f"{at_effective[worst]:.2f} sigma in {worst})"
            ),
            evidence={
                "per_step_batch": batch_size,
                "effective_batch": effective,
                "mean_error_per_step": sum(at_step.values()) / len(at_step),
                "mean_error_effective": sum(at_effective.values()) / len(at_effective),
                "extrapolated": extrapolated_step or extrapolated_effective,
            },
            fix=(
                f"this is Ghost BN with virtual batch {batch_size} (Hoffer et al. 2017): keep it "
                f"only if {batch_size} is large enough; otherwise use GroupNorm "
                "(normlab.swap_norm(model, 'gn')), whose output does not depend on the batch"
            ),
            severity="warning",
        )
    ]


def check_sync_batch_norm(model: nn.Module, x: torch.Tensor) -> list[Finding]:
    """SyncBatchNorm without CUDA or without an initialized process group: it synchronizes
    nothing (or fails). The forward that decides is run on a copy."""
    layers = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    if not layers:
        return []
    cuda, initialized = (
        torch.cuda.is_available(),
        distributed.is_available() and distributed.is_initialized(),
    )
    if cuda and initialized:
        return []
    try:
        copy.deepcopy(model).train()(x[:2])
        outcome = "runs, as plain BN over the local batch (no process group to sync with)"
    except Exception as error:  # the failure is the finding
        outcome = f"fails: {type(error).__name__}: {str(error).splitlines()[0]}"
    return [
        Finding(
            code="sync-bn-inactive",
            title=f"{len(layers)} SyncBatchNorm layer(s) on a machine where they cannot sync: {outcome}",
            evidence={
                "layers": len(layers),
                "cuda_available": cuda,
                "distributed_initialized": initialized,
                "train_forward": outcome,
            },
            fix=(
                "convert them to plain BN on one device (normlab.swap_norm(model, 'bn')); use "
                "nn.SyncBatchNorm.convert_sync_batchnorm only under DistributedDataParallel on CUDA"
            ),
            severity="error" if outcome.startswith("fails") else "warning",
        )
    ]


def check_batch_of_one(model: nn.Module, x: torch.Tensor) -> list[Finding]:
    """A training-mode forward of one example, on a copy; the failing layer is named."""
    probe = copy.deepcopy(model).train()
    entered: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: entered.append(name))
        for name, module in probe.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            probe(x[:1])
        return []
    except Exception as error:  # the failure is the finding
        message = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    finally:
        for hook in hooks:
            hook.remove()
    layer = entered[-1] if entered else ""
    return [
        Finding(
            code="batch-one-failure",
            title=f"a training-mode batch of 1 fails in {layer or 'the model'}: {message}",
            evidence={"layer": layer, "error": message},
            fix=(
                "never feed a batch of 1 in training (DataLoader(drop_last=True)); if it must "
                f"work, replace the batch-statistics layer {layer!r} by a per-sample norm "
                "(LayerNorm/GroupNorm) or frozen_bn"
            ),
            severity="error",
        )
    ]


def noise_for_doctor(
    model: nn.Module, x: torch.Tensor, batch_sizes: tuple[int, ...]
) -> NoiseReport:
    """The noise measurement the doctor's checks share (16 batches per size keeps it fast)."""
    return batch_stat_noise(model, x, batch_sizes=batch_sizes, batches_per_size=16)
