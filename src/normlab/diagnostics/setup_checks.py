"""The doctor's checks of how a model is set up for training: weight decay on BN, frozen BN
still updating, SyncBatchNorm without a process group, a batch of one. Each inspects the
model (and runs a forward on a copy where the behaviour must be shown, not assumed) and returns
the findings it supports.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as distributed
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .findings import Finding, top_values
from .layers import batch_norm_layers


@dataclass(frozen=True)
class WeightDecaySetting:
    """Weight decay as configured (normlab's ``weight_decay`` and ``norm_weight_decay``)."""

    weight_decay: float
    norm_weight_decay: bool = True
    """Whether the decay also applies to norm scales/shifts (PyTorch's optimizers do)."""


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
                "largest_drift": top_values(moved),
                "in_train_mode_now": len(in_train_mode),
                "momentum": sorted({str(model.get_submodule(n).momentum) for n in moved}),
            },
            fix=(
                "freeze them for real (the doctor's --fix on the checkpoint, or normlab.freeze_bn: "
                "frozen_bn layers), or call .eval() on these layers after every model.train()"
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


def check_batch_of_one(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int | None = None,
    num_train_examples: int | None = None,
) -> list[Finding]:
    """A training-mode forward of one example, on a copy; the failing layer is named.

    Graded by what training at ``batch_size`` on ``num_train_examples`` will feed: an error
    when it feeds a batch of one (batch size 1, or a last batch of one in each epoch,
    N mod B = 1, unless the loader drops it); otherwise a note, since the failure (typically a
    BN seeing 1x1 activations, as in ResNet-18 at 32x32) never happens in that set-up.
    """
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
    where = layer or "the model"
    remainder = None
    if batch_size is not None and num_train_examples is not None:
        remainder = num_train_examples % batch_size
    if batch_size == 1:
        severity, title = "error", f"training at batch 1 fails in {where}: {message}"
    elif remainder == 1 and num_train_examples is not None:
        severity = "error"
        title = (
            f"{num_train_examples} examples in batches of {batch_size} leave a last batch of one "
            f"each epoch (unless the loader drops it), and a training-mode batch of 1 fails in "
            f"{where}: {message}"
        )
    else:
        severity = "info"
        left = (
            f"batches of {batch_size} from {num_train_examples} examples never leave one"
            if remainder is not None
            else "harmless unless training ever feeds one (batch size 1, or N mod B = 1 "
            "without drop_last)"
        )
        title = f"a training-mode batch of 1 would fail in {where} ({left}): {message}"
    return [
        Finding(
            code="batch-one-failure",
            title=title,
            evidence={
                "layer": layer,
                "error": message,
                "batch_size": batch_size,
                "num_train_examples": num_train_examples,
                "last_batch": None if remainder is None else remainder or batch_size,
            },
            fix=(
                "never feed a batch of 1 in training (DataLoader(drop_last=True)); if it must "
                f"work, replace the batch-statistics layer {layer!r} by a per-sample norm "
                "(LayerNorm/GroupNorm) or frozen_bn"
            ),
            severity=severity,
        )
    ]
