"""Surgery on the BatchNorm layers of ANY torch model: swap, recalibrate (PreciseBN), freeze.

A "BatchNorm layer" is any ``torch.nn.modules.batchnorm._BatchNorm``: ``BatchNorm1d/2d/3d``,
``SyncBatchNorm`` and normlab's ``bn``, ``bn_keras``, ``gbn``, ``brn`` and ``frozen_bn``. They are
found among the registered submodules at any depth (``Sequential``, ``ModuleList``, ``ModuleDict``,
custom containers); a layer registered under several names stays shared after the swap.

- :func:`swap_norm` replaces each by ``make_norm(to, C, **options)``, carrying its state over.
- :func:`recalibrate_bn` replaces their running (EMA) statistics by exact population statistics
  over the data passed: PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", Sec. 3;
  fvcore's ``precise_bn``).
- :func:`freeze_bn` turns them into ``frozen_bn`` (statistics fixed; affine optionally too).

Swaps and freezes build every replacement first and assign only when all were built: a refused
swap leaves the model untouched. Rebuild the optimizer after a swap (the parameters are new).

A BatchNorm *subclass* that does more than normalize (timm's ``BatchNormAct2d``: batch norm, then
its ``drop`` and ``act`` children) keeps that behaviour: its children follow the new norm in a
:class:`~normlab.norm_tail.NormWithTail`, after a probe confirmed its forward is "batch norm,
then its children"; a subclass whose forward does anything else is refused in one line
(``norm_tail.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

from normlab.norm_tail import NormWithTail, batch_norm_tail, describe_tail
from normlab.norms import (
    FrozenBatchNorm,
    NormlabError,
    make_norm,
    norm_entry,
    set_renormalization,
)

logger = logging.getLogger(__name__)

CARRIED_STATE = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
"""State copied from a replaced BN wherever the replacement has a tensor of the same shape."""


@dataclass(frozen=True)
class SwapRecord:
    """One BatchNorm layer replaced by :func:`swap_norm` or :func:`freeze_bn`."""

    name: str
    """Qualified name in the model ("" for the model itself; the first name of a shared layer)."""
    old_type: str
    new_type: str
    num_channels: int
    carried: tuple[str, ...]
    """State copied into the replacement (see :data:`CARRIED_STATE`)."""
    dropped: tuple[str, ...]
    """State of the old layer the replacement has no place for (e.g. gamma, beta for ``none``)."""
    tail: tuple[str, ...] = ()
    """Children of a BatchNorm subclass kept after the new norm, as ``"name (Type)"`` (timm's
    ``BatchNormAct2d``: ``("drop (Identity)", "act (SiLU)")``); empty for a plain BN."""


def _find_batch_norms(model: nn.Module) -> dict[nn.Module, list[str]]:
    """Every BatchNorm layer (outermost only) with all the names it is registered under."""
    if isinstance(model, _BatchNorm):
        return {model: [""]}
    found: dict[nn.Module, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if not isinstance(module, _BatchNorm):
            continue
        # A BN nested inside a BN subclass goes with its parent.
        if any(name.startswith(outer + ".") for names in found.values() for outer in names):
            continue
        found.setdefault(module, []).append(name)
    return found


def _carry_state(source: nn.Module, target: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    carried, dropped = [], []
    with torch.no_grad():
        for attribute in CARRIED_STATE:
            value = getattr(source, attribute, None)
            if not isinstance(value, torch.Tensor):
                continue
            slot = getattr(target, attribute, None)
            if isinstance(slot, torch.Tensor) and slot.shape == value.shape:
                slot.copy_(value)
                carried.append(attribute)
            else:
                dropped.append(attribute)
    return tuple(carried), tuple(dropped)


def _match_placement(source: nn.Module, target: nn.Module) -> None:
    reference = next(
        (t for t in (*source.parameters(), *source.buffers()) if t.is_floating_point()), None
    )
    if reference is not None:
        target.to(device=reference.device, dtype=reference.dtype)
    target.train(source.training)


def _replace_batch_norms(
    model: nn.Module,
    build: Callable[[str, _BatchNorm], nn.Module],
    action: str,
    skip: Callable[[_BatchNorm], bool] = lambda module: False,
) -> tuple[nn.Module, list[SwapRecord]]:
    """Build a replacement for every BN (all or nothing), then assign them; return the model."""
    targets = {m: names for m, names in _find_batch_norms(model).items() if not skip(m)}
    replacements: dict[nn.Module, nn.Module] = {}
    records: list[SwapRecord] = []
    for module, names in targets.items():
        label = names[0] or "the model itself"
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            raise NormlabError(
                f"{action}: {label} ({type(module).__name__}) is lazy and not initialized yet; "
                "run one forward pass first. The model was left unchanged."
            )
        try:
            tail = batch_norm_tail(module)
            replacement = build(names[0], module)
        except NormlabError as error:
            raise NormlabError(
                f"{action}: cannot replace {label} ({type(module).__name__}, "
                f"{module.num_features} channels): {error}. The model was left unchanged."
            ) from None
        _match_placement(module, replacement)
        carried, dropped = _carry_state(module, replacement)
        replacements[module] = replacement
        if tail:
            replacements[module] = NormWithTail(replacement, tail)
            # The tail keeps its own modes; only the wrapper's flag follows the old layer.
            replacements[module].training = module.training
        records.append(
            SwapRecord(
                names[0],
                type(module).__name__,
                type(replacement).__name__,
                module.num_features,
                carried,
                dropped,
                describe_tail(tail),
            )
        )
    for module, names in targets.items():
        for name in names:
            if not name:
                return replacements[module], records
            parent_name, _, attribute = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attribute, replacements[module])
    return model, records


def _log_records(action: str, records: list[SwapRecord], target: str) -> None:
    if not records:
        logger.warning("%s: no BatchNorm layer found; nothing was replaced", action)
        return
    counts: dict[str, int] = {}
    for record in records:
        counts[record.old_type] = counts.get(record.old_type, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    tails = sorted({", ".join(record.tail) for record in records if record.tail})
    kept = f"; kept what they do after normalizing: {'; '.join(tails)}" if tails else ""
    logger.info("%s: replaced %s by %s%s", action, summary, target, kept)


def swap_norm(
    model: nn.Module,
    to: str,
    *,
    report: list[SwapRecord] | None = None,
    **options: object,
) -> nn.Module:
    """Replace every BatchNorm layer of ``model`` by the registry norm ``to``; return the model.

    Each BN with C channels becomes ``make_norm(to, C, **options)`` on the BN's device and dtype
    and in its training mode; gamma, beta and the running statistics are copied wherever the new
    layer has a tensor of the same shape (``gn``'s weight and bias, ``frozen_bn``'s statistics).
    The model is changed in place and returned (when the model *is* a BN, the new layer is
    returned). ``report``, if given, receives one :class:`SwapRecord` per replaced layer; a
    summary is logged on the ``normlab.surgery`` logger.

    Refused with :class:`NormlabError`, the model untouched: unknown ``to``, options the norm
    rejects for some layer (e.g. ``groups`` not dividing its channels), and ``gn_ws``, which needs
    the convolutions feeding each norm weight-standardized: they cannot be located in an
    arbitrary model (build normlab models with ``norm="gn_ws"`` instead, or swap to ``gn``).
    """
    entry = norm_entry(to)
    if entry.weight_standardized_conv:
        raise NormlabError(
            f"swap_norm: {to!r} pairs the norm with weight-standardized convolutions, which "
            "swap_norm cannot locate in an arbitrary model; build the model with this norm, "
            "or swap to 'gn'. The model was left unchanged."
        )
    swapped, records = _replace_batch_norms(
        model, lambda name, module: make_norm(to, module.num_features, **options), "swap_norm"
    )
    _log_records("swap_norm", records, repr(to))
    if report is not None:
        report.extend(records)
    return swapped


def freeze_bn(
    model: nn.Module,
    *,
    freeze_affine: bool = True,
    report: list[SwapRecord] | None = None,
) -> nn.Module:
    """Turn every BatchNorm layer into ``frozen_bn``: running statistics used and never updated.

    Each layer keeps its eps, affine flag, gamma, beta and running statistics. With
    ``freeze_affine`` (default) gamma and beta of every frozen layer stop learning
    (``requires_grad=False``); otherwise they keep training. Layers that are already frozen are
    kept. Refused (model untouched) for a BN without running statistics
    (``track_running_stats=False``): there is nothing to freeze it to. ``frozen_bn`` layers
    compile with ``torch.jit.script``: the frozen model is scriptable when the rest of it is.
    """

    def build(name: str, module: _BatchNorm) -> nn.Module:
        if module.running_mean is None or module.running_var is None:
            raise NormlabError(
                "it keeps no running statistics (track_running_stats=False), so there is "
                "nothing to freeze it to"
            )
        return FrozenBatchNorm(module.num_features, eps=module.eps, affine=module.affine)

    frozen, records = _replace_batch_norms(
        model, build, "freeze_bn", skip=lambda module: isinstance(module, FrozenBatchNorm)
    )
    if freeze_affine:
        for module in frozen.modules():
            if isinstance(module, FrozenBatchNorm):
                for parameter in (module.weight, module.bias):
                    if parameter is not None:
                        parameter.requires_grad_(False)
    _log_records("freeze_bn", records, "'frozen_bn'")
    if report is not None:
        report.extend(records)
    return frozen


class _PopulationStatistics:
    """Exact per-channel mean and biased variance of everything one layer received.

    Batches are merged by the parallel-variance rule (Chan, Golub & LeVeque 1979) in float64,
    each weighted by its n = elements per channel. The result equals the issue's formula
    ``mean = E_n[mu_B]``, ``var = E_n[mu_B^2 + sigma_B^2 (n - 1) / n] - mean^2`` (sigma_B^2 the
    unbiased batch variance PyTorch records, E_n weighted by n), without its cancellation.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.sum_squares: torch.Tensor | None = None  # sum of squared deviations from the mean

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        variance, mean = torch.var_mean(x, dim=dims, correction=0)
        if self.mean is None:
            self.count, self.mean, self.sum_squares = n, mean, variance * n
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.sum_squares = (
            self.sum_squares + variance * n + delta.square() * (self.count * n / total)
        )
        self.count = total

    @property
    def variance(self) -> torch.Tensor:
        return self.sum_squares / self.count


def recalibration_targets(model: nn.Module) -> list[_BatchNorm]:
    """The layers :func:`recalibrate_bn` recalibrates: every ``_BatchNorm`` with running
    statistics, ``frozen_bn`` excepted (each module once)."""
    return [
        module
        for module in dict.fromkeys(model.modules())
        if isinstance(module, _BatchNorm)
        and not isinstance(module, FrozenBatchNorm)
        and module.running_mean is not None
        and module.running_var is not None
    ]


def _batch_of_one(index: int) -> str:
    return (
        f"recalibrate_bn: batch {index} holds one example; the BN layers recalibrate with "
        "batch statistics, which one example does not give (a layer with 1x1 activations "
        "fails on it, the others normalize each example by itself, unlike in training); pass "
        "batches of at least 2 examples, at the training batch size (a DataLoader with "
        "drop_last=True never ends on a batch of one)"
    )


def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor | tuple | list],
    num_batches: int | None = None,
) -> nn.Module:
    """PreciseBN: set every BN's running statistics to population statistics over ``batches``.

    The EMA of batch statistics lags behind the weights and is dominated by the last batches;
    PreciseBN (Wu & Johnson 2021; fvcore ``precise_bn``) replaces it, after training, by the
    exact mean and variance of each BN's input over the data passed. The model is frozen for the
    pass: no gradients, every module in eval mode (dropout off) except the BN layers, which run
    in training mode so that each normalizes with batch statistics, as during training, and so
    that later layers see the inputs they saw in training (``brn`` without its r, d corrections,
    which would normalize by the running statistics being replaced). Each BN then gets

    - ``running_mean`` = the mean of its input over all batches (weighted by batch size), and
    - ``running_var`` = the *population* (biased, divide by M) variance over all M values per
      channel; it is what normalizes the data passed to exactly unit variance at inference.
      PyTorch's EMA stores unbiased batch variances; the factor (M - 1) / M between the two
      conventions is negligible for a population (M = examples x positions).

    ``batches`` yields input tensors or ``(inputs, targets, ...)`` tuples/lists (the first element
    is fed to the model, moved to the model's device); ``num_batches`` stops after that many
    (default: all; pass it for an endless iterable). Every batch must hold at least 2 examples
    (a batch of one is refused with a :class:`NormlabError`: its "batch statistics" are one
    example's own, and at 1x1 activations PyTorch cannot compute them). Everything else is
    restored afterwards: training flags, momenta and all other buffers (``num_batches_tracked``, ``brn``'s step
    counter, the running statistics of non-BN layers). ``frozen_bn`` layers keep their fixed
    statistics, and layers with per-group statistics (``bgn``) or no ``_BatchNorm`` base
    (``evonorm_b0``) are not recalibrated. Returns the model.
    """
    if num_batches is not None and (isinstance(num_batches, bool) or num_batches < 1):
        raise NormlabError(f"recalibrate_bn: num_batches must be >= 1, got {num_batches!r}")
    targets = recalibration_targets(model)
    if not targets:
        logger.warning("recalibrate_bn: no BatchNorm layer with running statistics found")
        return model
    statistics = {module: _PopulationStatistics() for module in targets}
    training_flags = {module: module.training for module in model.modules()}
    momenta = {module: module.momentum for module in targets}
    saved_buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    renormalization: dict = {}
    device = next((p.device for p in model.parameters()), None)
    hooks = []
    seen = 0
    try:
        # brn: r and d would normalize by the very running statistics being replaced.
        renormalization = set_renormalization(model, False)
        model.eval()
        for module in targets:
            module.train()
            module.momentum = 0.0  # the pass itself must not move any running statistic
            hooks.append(
                module.register_forward_pre_hook(
                    lambda layer, args: statistics[layer].update(args[0])
                )
            )
        with torch.no_grad():
            for batch in batches:
                if num_batches is not None and seen >= num_batches:
                    break
                inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
                if len(inputs) < 2:
                    raise NormlabError(_batch_of_one(seen + 1))
                model(inputs.to(device) if device is not None else inputs)
                seen += 1
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():
            for buffer, value in saved_buffers:
                buffer.copy_(value)
        for module, momentum in momenta.items():
            module.momentum = momentum
        for layer, enabled in renormalization.items():
            layer.renormalize = enabled
        for module, flag in training_flags.items():
            module.training = flag
    if seen == 0:
        raise NormlabError("recalibrate_bn: no batches were given")
    unused = []
    with torch.no_grad():
        for module, estimate in statistics.items():
            if estimate.mean is None:
                unused.append(type(module).__name__)
                continue
            module.running_mean.copy_(estimate.mean)
            module.running_var.copy_(estimate.variance)
    if unused:
        logger.warning("recalibrate_bn: %d BatchNorm layer(s) saw no input, kept", len(unused))
    logger.info(
        "recalibrate_bn: %d layer(s) recalibrated over %d batches", len(targets) - len(unused), seen
    )
    return model
