"""``normlab doctor``: a linter for normalization, with evidence.

:func:`examine` runs the checks of ``checks.py`` on a user's model and a sample of its data and
returns one :class:`~normlab.diagnostics.findings.Finding` per problem the measurements show:

Measured statistics (``checks.py``):

- ``bn-batch-noise``: BN at the per-step batch size with mini-batch statistics noisier than
  ``checks.NOISE_THRESHOLD`` (from ``noise.py``);
- ``ema-horizon``: the running statistics' horizon 1/momentum longer than an epoch;
- ``eval-train-gap``: eval() accuracy below train-mode (batch statistics) accuracy, and how much
  PreciseBN recovers (from ``gap.py``);
- ``dropout-before-bn``: dropout shifting a BN's input variance (from ``variance_shift.py``);
- ``grad-accumulation-bn``: accumulation N > 1, statistics over B instead of B x N;

Set-up (``setup_checks.py``):

- ``weight-decay-on-norm``: weight decay on BN scales/shifts (optimizer groups or setting);
- ``frozen-bn-updating``: BN parameters frozen but running statistics still updating;
- ``sync-bn-inactive``: SyncBatchNorm without CUDA or without a process group;
- ``batch-one-failure``: a training-mode forward of one example fails (an error when the
  set-up feeds a batch of one: batch size 1, or N mod B = 1; otherwise a note).

A healthy model gets no findings. :func:`fix_checkpoint` applies the mechanical fixes
(PreciseBN recalibration, freeze_bn) to a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.surgery import freeze_bn

from .checks import (
    check_batch_noise,
    check_dropout_before_bn,
    check_ema_horizon,
    check_eval_gap,
    check_grad_accumulation,
    noise_for_doctor,
)
from .findings import Finding
from .gap import precise_copy
from .layers import batch_norm_layers
from .noise import DEFAULT_BATCH_SIZES
from .setup_checks import (
    WeightDecaySetting,
    check_batch_of_one,
    check_frozen_updating,
    check_norm_weight_decay,
    check_sync_batch_norm,
)

FIX_KINDS = ("precise_bn", "freeze_bn")


def _load(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    loaded = copy.deepcopy(model)
    try:
        loaded.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise NormlabError(f"checkpoint does not fit the model: {first}") from None
    return loaded


def examine(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    grad_accumulation: int = 1,
    checkpoint_state: Mapping[str, torch.Tensor] | None = None,
    weight_decay_config: WeightDecaySetting | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    num_train_examples: int | None = None,
) -> list[Finding]:
    """Findings on ``model`` (with ``checkpoint_state`` loaded into a copy, if given) at per-step
    batch size ``batch_size``, measured on the sample (``x``, ``y``) of its training data.

    ``x`` should hold at least 4 x ``batch_size`` x ``grad_accumulation`` examples for the noise
    to be measured rather than extrapolated (a few hundred is plenty). ``optimizer`` (its
    parameter groups) or ``weight_decay_config`` tell how weight decay is applied;
    ``num_train_examples`` gives the steps per epoch for the EMA horizon check (skipped
    without it) and whether an epoch ends on a batch of one (N mod B = 1). The model passed in is never changed.
    """
    if isinstance(batch_size, bool) or batch_size < 1:
        raise NormlabError(f"doctor: batch_size must be >= 1, got {batch_size!r}")
    if grad_accumulation < 1:
        raise NormlabError(f"doctor: grad_accumulation must be >= 1, got {grad_accumulation}")
    if len(x) != len(y) or len(x) < 2:
        raise NormlabError(
            f"doctor: need at least 2 examples with one label each, got {len(x)} inputs and "
            f"{len(y)} labels"
        )
    if checkpoint_state is not None:
        model = _load(model, checkpoint_state)
    findings = check_batch_of_one(model, x, batch_size, num_train_examples)
    findings += check_sync_batch_norm(model, x)
    findings += check_frozen_updating(model, x, batch_size)
    findings += check_norm_weight_decay(model, optimizer, weight_decay_config)
    if batch_norm_layers(model) and batch_size >= 2:
        sizes = {*DEFAULT_BATCH_SIZES, batch_size, batch_size * grad_accumulation}
        noise = noise_for_doctor(model, x, tuple(sorted(sizes)))
        findings += check_batch_noise(noise, batch_size)
        findings += check_grad_accumulation(noise, batch_size, grad_accumulation)
        findings += check_ema_horizon(model, batch_size, num_train_examples)
        findings += check_eval_gap(model, x, y, batch_size)
        findings += check_dropout_before_bn(model, x, y, batch_size)
    return findings


def fix_checkpoint(
    model: nn.Module, x: torch.Tensor, kind: str, *, batch_size: int = 32
) -> nn.Module:
    """A patched copy of ``model`` (the input is never touched):

    - ``precise_bn``: running statistics replaced by PreciseBN population statistics over ``x``
      (``surgery.recalibrate_bn``, batches of ``batch_size``: the training batch size; dropout
      off, which also undoes the dropout variance shift);
    - ``freeze_bn``: every BN turned into ``frozen_bn`` (``surgery.freeze_bn``), statistics and
      affine parameters fixed.

    Save it with ``torch.save(patched.state_dict(), path)`` to a new file.
    """
    if kind == "precise_bn":
        if batch_size < 2:
            raise NormlabError(f"fix precise_bn: batch_size must be >= 2, got {batch_size}")
        patched, _ = precise_copy(model, x, batch_size)
        return patched
    if kind == "freeze_bn":
        return freeze_bn(copy.deepcopy(model))
    raise NormlabError(f"unknown fix {kind!r}; valid: {', '.join(FIX_KINDS)}")
