"""PreciseBN over a pack of the general packer: every run's recalibrated test accuracy from one
pass, as ``packed_eval.precise_test_accuracies`` gives the channel packer's runs.

The pass is ``surgery.recalibrate_bn``'s, per run: the layers it recalibrates
(``recalibration_targets`` of one run's layout) run in training mode with momentum 0 (brn
without its r, d corrections), everything else in eval mode, over the same batches the run
alone is recalibrated with, replicated into every run's slice. A pre-hook on each target writes
run k's per-channel batch mean and biased variance into row k of a (K, C) tensor (the only way
out of vmap: :attr:`FunctionalPackedModel.batched_outputs`); batches are merged per run in
float64 by the parallel-variance rule (Chan, Golub & LeVeque 1979), as ``recalibrate_bn`` does.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable

import torch
from torch import nn

from normlab.data import Dataset
from normlab.norms.renorm import set_renormalization
from normlab.surgery import recalibration_targets

from .evaluate import chunks, precise_batches
from .packed_eval import _replicate, correct_counts
from .packed_func import FunctionalPackedModel


def _collect(name: str, packed: FunctionalPackedModel, elements: dict[str, int]):  # type: ignore[no-untyped-def]
    def hook(layer: nn.Module, args: tuple) -> None:
        x = args[0].detach().to(torch.float64)
        elements[name] = x.numel() // x.shape[1]  # one run's shape: vmap hides the runs
        variance, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
        packed.batched_outputs[f"{name}.mean"].copy_(mean)
        packed.batched_outputs[f"{name}.var"].copy_(variance)

    return hook


@torch.no_grad()
def recalibrate_pack(packed: FunctionalPackedModel, batches: Iterable[torch.Tensor]) -> bool:
    """Set every run's running statistics of ``packed`` to population statistics over
    ``batches`` (N, K*C, ...); False (nothing changed) when no layer has running statistics."""
    names = {id(m): n for n, m in packed.template.named_modules()}
    targets = {names[id(m)]: m for m in recalibration_targets(packed.template)}
    if not targets:
        return False
    packed.eval()
    set_renormalization(packed.template, False)
    hooks = []
    elements: dict[str, int] = {}
    for name, module in targets.items():
        module.train()
        module.momentum = 0.0
        hooks.append(module.register_forward_pre_hook(_collect(name, packed, elements)))
    count = packed.count
    merged: dict[str, list] = {}  # name -> [elements so far, mean (K, C), sum of squares]
    try:
        for batch in batches:
            outputs = {
                f"{name}.{kind}": torch.zeros(count, m.num_features, dtype=torch.float64)
                for name, m in targets.items()
                for kind in ("mean", "var")
            }
            outputs = {key: value.to(batch.device) for key, value in outputs.items()}
            packed(batch, outputs)
            for name in targets:
                mean, variance = outputs[f"{name}.mean"], outputs[f"{name}.var"]
                if name not in elements:
                    continue  # the layer saw no input in this batch
                n = elements.pop(name)
                if name not in merged:
                    merged[name] = [n, mean, variance * n]
                    continue
                seen, old, squares = merged[name]
                total = seen + n
                delta = mean - old
                merged[name] = [
                    total,
                    old + delta * (n / total),
                    squares + variance * n + delta.square() * (seen * n / total),
                ]
    finally:
        for hook in hooks:
            hook.remove()
    buffers = packed.stacked_buffers()
    for name, (seen, mean, squares) in merged.items():
        buffers[f"{name}.running_mean"].copy_(mean)
        buffers[f"{name}.running_var"].copy_(squares / seen)
    return True


def func_precise_test_accuracies(
    packed: FunctionalPackedModel, dataset: Dataset, batch_size: int, examples: int
) -> tuple[list[float], float] | None:
    """``packed_eval.precise_test_accuracies`` for the general packer: every run's test accuracy
    after PreciseBN over ``examples`` training images, from one pass, and its seconds; None when
    the runs' models have no layer with running statistics."""
    started = time.perf_counter()
    precise = copy.deepcopy(packed)
    batches = (
        _replicate(batch, packed.count)
        for batch in precise_batches(dataset.x_train, batch_size, examples)
    )
    if not recalibrate_pack(precise, batches):
        return None
    precise.eval()
    test_ranges = chunks(len(dataset.y_test), 512)
    correct = correct_counts(precise, dataset.x_test, dataset.y_test, test_ranges)
    return [c / len(dataset.y_test) for c in correct], time.perf_counter() - started
