"""Dropout variance shift (Li, Chen, Hu & Yang 2019, "Understanding the Disharmony between
Dropout and Batch Normalization by Variance Shift").

Inverted dropout multiplies each unit by ``m / p`` with ``m ~ Bernoulli(p)`` (p the keep
probability, ``1 - nn.Dropout.p``) in training and is the identity in inference. For an input x
with mean c and variance v, independent of the mask::

    E[y] = c,    E[y^2] = E[x^2] E[m^2] / p^2 = (v + c^2) / p
    Var_train(y) = (v + c^2) / p - c^2,    Var_inference(y) = v

so a BN right after the dropout sees, in inference, its training variance scaled by::

    ratio = Var_inference / Var_train = p v / (v + (1 - p) c^2)     (= p exactly when c = 0)

Its running variance was accumulated in training, so at inference it divides by a variance
1 / ratio times too large: the activations shrink, and the shift compounds through later layers.
With layers between the dropout and the BN the ratio is no longer this closed form; it is
measured.

Method. A forward pass with pre-hooks on every leaf module records the execution order; a BN
has dropout upstream when a dropout with ``p > 0`` ran before it and that dropout's parent
module contains the BN (same block or path: a dropout in a block does not count for the next
block's BNs; one in the model's root counts for every later BN). For those BNs the input
variance per channel is measured over ``x`` twice, with every BN in eval mode (fixed running
statistics, so that only dropout differs): dropout in training mode (seeded masks), then off.

The shift's own cost in test accuracy is ``shift_cost = precise_acc - precise_dropout_acc``: the
same weights with running statistics recomputed by PreciseBN over the same batches, once in
inference mode (dropout off, Li et al.'s fix) and once with dropout on (what the EMA estimates,
without its lag). ``recalibration_gain = precise_acc - running_acc`` is what recomputing with
dropout off recovers against the EMA: the shift plus the EMA's lag, so it is not the shift's
cost (before issue 23 it was reported as ``accuracy_cost``; :func:`shift_cost_of` reads records
of both versions).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from normlab.surgery import _PopulationStatistics, recalibrate_bn
from normlab.train.evaluate import accuracy, chunks, precise_batches

from .gap import precise_copy
from .layers import batch_norm_layers, training_flags_restored

MASK_SEED_SALT = 0x6E6C6473
"""Added to ``seed`` before seeding dropout masks: torch.manual_seed(0) is also how test data is
often drawn, and masks from the very same random stream as the inputs are correlated with them
(seen: a measured ratio of 1.14 instead of 0.7 on a toy layer)."""


@dataclass(frozen=True)
class ShiftedLayer:
    """A BN layer with dropout upstream and the variance shift measured at its input."""

    name: str
    dropout: str
    """Name of the nearest dropout executed before it in the same block or path."""
    keep_probability: float
    modules_between: int
    """Leaf modules executed between that dropout and the BN (0: right before it)."""
    ratio: float
    """mean over channels of Var_inference / Var_train of the BN's input."""
    ratio_min: float
    ratio_max: float
    predicted_ratio: float | None
    """mean over channels of p v / (v + (1 - p) c^2) when the dropout is right before the BN."""


@dataclass(frozen=True)
class VarianceShiftReport:
    """Every BN with dropout upstream, and what the shift costs in accuracy (if labels given)."""

    layers: tuple[ShiftedLayer, ...]
    running_acc: float | None = None
    """Eval mode with the EMA running statistics."""
    precise_acc: float | None = None
    """Running statistics recomputed in inference mode (PreciseBN, dropout off)."""
    precise_dropout_acc: float | None = None
    """Running statistics recomputed with dropout on (the EMA's target, without its lag)."""

    @property
    def shift_cost(self) -> float | None:
        """precise_acc - precise_dropout_acc: the accuracy the variance shift itself costs."""
        if self.precise_acc is None or self.precise_dropout_acc is None:
            return None
        return self.precise_acc - self.precise_dropout_acc

    @property
    def recalibration_gain(self) -> float | None:
        """precise_acc - running_acc: what recomputing with dropout off recovers against the
        EMA (the shift and the EMA's lag together)."""
        if self.running_acc is None or self.precise_acc is None:
            return None
        return self.precise_acc - self.running_acc

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "shift_cost": self.shift_cost,
            "recalibration_gain": self.recalibration_gain,
        }


def shift_cost_of(record: Mapping[str, Any]) -> float | None:
    """The shift's own cost from a stored ``variance_shift`` record of any version: computed
    from its ``precise_acc`` and ``precise_dropout_acc`` (records written before issue 23 carry
    an ``accuracy_cost`` that is ``precise_acc - running_acc``, the EMA's lag included, and is
    not read)."""
    precise, with_dropout = record.get("precise_acc"), record.get("precise_dropout_acc")
    if precise is None or with_dropout is None:
        return None
    return float(precise) - float(with_dropout)


def execution_order(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """Leaf modules (and BN layers) in the order one eval-mode forward pass of ``x`` runs them;
    a module run twice appears twice."""
    order: list[tuple[str, nn.Module]] = []
    norms = {id(module) for _, module in batch_norm_layers(model)}
    watched = [
        (name, module)
        for name, module in model.named_modules()
        if next(module.children(), None) is None or id(module) in norms
    ]
    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: order.append((name, m)))
        for name, module in watched
    ]
    try:
        with training_flags_restored(model), torch.no_grad():
            model.eval()
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _contains(parent_name: str, name: str) -> bool:
    return parent_name == "" or name.startswith(parent_name + ".")


def dropout_upstream(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[str, float, int]]:
    """BN name -> (nearest upstream dropout name, keep probability, modules between)."""
    bn_names = {module: name for name, module in batch_norm_layers(model)}
    order = execution_order(model, x[:2])
    found: dict[str, tuple[str, float, int]] = {}
    for position, (name, module) in enumerate(order):
        if module not in bn_names or name in found:
            continue
        for earlier in range(position - 1, -1, -1):
            dropout_name, dropout = order[earlier]
            if isinstance(dropout, _DropoutNd) and dropout.p > 0:
                parent = dropout_name.rpartition(".")[0]
                if _contains(parent, name):
                    found[name] = (dropout_name, 1.0 - dropout.p, position - earlier - 1)
                    break
    return found


def _input_statistics(
    model: nn.Module, names: list[str], x: torch.Tensor, dropout_on: bool, seed: int
) -> dict[str, _PopulationStatistics]:
    statistics = {name: _PopulationStatistics() for name in names}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda m, args, name=name: statistics[name].update(args[0])
        )
        for name in names
    ]
    try:
        with training_flags_restored(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + MASK_SEED_SALT)
            model.eval()
            for module in model.modules():
                if isinstance(module, _DropoutNd):
                    module.train(dropout_on)
            for start, stop in chunks(len(x), 256):
                model(x[start:stop])
    finally:
        for hook in hooks:
            hook.remove()
    return statistics


def _precise_with_dropout(
    model: nn.Module, x: torch.Tensor, batch_size: int, seed: int
) -> nn.Module:
    """PreciseBN copy whose statistics are collected with dropout ON (recalibrate_bn turns it
    off; a forward hook on each dropout applies its training-mode mask during the pass)."""
    patched = copy.deepcopy(model)

    def always_drop(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return F.dropout(args[0], module.p, training=True)

    hooks = [
        module.register_forward_hook(always_drop)
        for module in patched.modules()
        if isinstance(module, _DropoutNd)
    ]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + MASK_SEED_SALT)
            # The batches of precise_copy's pass: only dropout differs between the two.
            recalibrate_bn(patched, precise_batches(x, batch_size))
    finally:
        for hook in hooks:
            hook.remove()
    return patched


def variance_shift(
    model: nn.Module,
    x: torch.Tensor,
    *,
    x_eval: torch.Tensor | None = None,
    y_eval: torch.Tensor | None = None,
    batch_size: int = 32,
    seed: int = 0,
) -> VarianceShiftReport:
    """Variance shift at every BN with dropout upstream, over the (training) inputs ``x``.

    With ``x_eval`` and ``y_eval`` also the accuracy cost (PreciseBN passes over ``x`` in batches
    of ``batch_size``, the training batch size). ``model`` is left unchanged; dropout masks come
    from a generator seeded with ``seed`` without touching the global RNG stream.
    """
    upstream = dropout_upstream(model, x)
    names = list(upstream)
    layers: list[ShiftedLayer] = []
    if names:
        train = _input_statistics(model, names, x, dropout_on=True, seed=seed)
        inference = _input_statistics(model, names, x, dropout_on=False, seed=seed)
        for name in names:
            dropout_name, keep, between = upstream[name]
            eps = model.get_submodule(name).eps
            var_train, var_inference = train[name].variance, inference[name].variance
            alive = var_train > eps
            ratios = (var_inference / var_train)[alive]
            mean, variance = inference[name].mean[alive], var_inference[alive]
            predicted = keep * variance / (variance + (1 - keep) * mean.square())
            layers.append(
                ShiftedLayer(
                    name=name,
                    dropout=dropout_name,
                    keep_probability=keep,
                    modules_between=between,
                    ratio=float(ratios.mean()) if alive.any() else 1.0,
                    ratio_min=float(ratios.min()) if alive.any() else 1.0,
                    ratio_max=float(ratios.max()) if alive.any() else 1.0,
                    predicted_ratio=float(predicted.mean())
                    if between == 0 and alive.any()
                    else None,
                )
            )
    if x_eval is None or y_eval is None or not layers:
        return VarianceShiftReport(tuple(layers))
    precise, _ = precise_copy(model, x, batch_size)
    precise_dropout = _precise_with_dropout(model, x, batch_size, seed)
    return VarianceShiftReport(
        tuple(layers),
        running_acc=accuracy(model, x_eval, y_eval),
        precise_acc=accuracy(precise, x_eval, y_eval),
        precise_dropout_acc=accuracy(precise_dropout, x_eval, y_eval),
    )
