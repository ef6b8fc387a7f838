"""The doctor's checks that measure normalization statistics: batch noise, gradient
accumulation, EMA horizon, eval/train gap, dropout variance shift. Each returns the findings its
measurement supports (none when it shows no problem); thresholds are stated next to each. The
model passed in is never changed (measurements run on copies or restore every flag and buffer).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from .findings import Finding, top_values
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
                "noisiest_layers": top_values(noisy),
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
                f"recalibrate after training (PreciseBN: normlab.recalibrate_bn, or the doctor's "
                f"--fix on the checkpoint), or set momentum >= 1/{steps_per_epoch} = "
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
    :data:`ACCURACY_GAP_FLOOR` or two standard errors; PreciseBN's recovery is the evidence.

    PreciseBN goes over the same sample it is evaluated on: population statistics use no
    labels, and over a few hundred examples the advantage of having seen the test inputs is
    small next to a stale EMA."""
    gap = inference_gap(model, x, x, y, batch_size)
    best = max(gap.batch_acc, gap.precise_acc)
    tolerance = _tolerance(best, len(y))
    if best - gap.running_acc <= tolerance:
        return []
    recovered = gap.precise_acc - gap.running_acc
    fix = (
        "recalibrate the running statistics (the doctor's --fix on the checkpoint, or "
        "normlab.recalibrate_bn over ~10^4 training inputs at the training batch size): that "
        "recovers "
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
                "recommend; meanwhile recompute the statistics with dropout off (the doctor's "
                "--fix on the checkpoint, or normlab.recalibrate_bn): "
                f"{report.accuracy_cost:+.3f} accuracy here"
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


def noise_for_doctor(
    model: nn.Module, x: torch.Tensor, batch_sizes: tuple[int, ...]
) -> NoiseReport:
    """The noise measurement the doctor's checks share (16 batches per size keeps it fast)."""
    return batch_stat_noise(model, x, batch_sizes=batch_sizes, batches_per_size=16)
