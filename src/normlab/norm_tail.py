"""What a BatchNorm subclass does beyond normalizing, found by a probe and kept through a swap.

A ``_BatchNorm`` subclass may do more than normalize. timm's ``BatchNormAct2d`` is a
``BatchNorm2d`` whose forward is ``act(drop(batch_norm(x)))`` with ``drop`` and ``act`` child
modules; replacing it by a plain norm silently drops the activation (32 of efficientnet_b0's 65
activation modules survive a swap to ``gn``). PyTorch's ``convert_sync_batchnorm`` has the same
bug (timm issue 1254). :func:`batch_norm_tail` decides, for one layer, what a swap must keep:

- a plain BN (PyTorch's ``BatchNorm1d/2d/3d``, their lazy forms, ``SyncBatchNorm``, normlab's
  ``BatchNorm``, ``GhostBatchNorm``, ``BatchRenorm``, ``FrozenBatchNorm``): nothing;
- any other subclass: a probe runs a copy of the layer, its affine parameters and running
  statistics set to random values (so that an unnormalized input cannot pass for a normalized
  one) and its children in eval mode (dropout off), on a small random input, in eval mode and in
  training mode, and compares it with ``F.batch_norm`` with the same statistics followed by its
  children in registration order. Equal: the children are the tail to keep (none: the layer is
  a plain BN). Different, or failing: refused, since normlab cannot know what the layer does
  beyond normalizing.

The replacement of a layer with a tail is a :class:`NormWithTail`: the new norm under ``norm``
and the old children under their own names, so a state dict reads ``bn1.norm.weight``,
``bn1.act...``. The probe never touches the layer itself or the global RNG.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms import BatchNorm, BatchRenorm, FrozenBatchNorm, GhostBatchNorm, NormlabError

PLAIN_BATCH_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.SyncBatchNorm,
    BatchNorm,
    GhostBatchNorm,
    BatchRenorm,
    FrozenBatchNorm,
)
"""Classes (exact types, not their subclasses) known to do nothing but normalize."""


class NormWithTail(nn.Module):
    """``norm``, then the kept children of a replaced BatchNorm subclass, in their order.

    The children keep their attribute names (``drop``, ``act`` for timm's ``BatchNormAct2d``);
    the norm is ``norm`` (``normalization`` if a child already has that name).
    """

    def __init__(self, norm: nn.Module, tail: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.norm_name = "normalization" if any(name == "norm" for name, _ in tail) else "norm"
        self.add_module(self.norm_name, norm)
        self.tail_names = tuple(name for name, _ in tail)
        for name, child in tail:
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = getattr(self, self.norm_name)(x)
        for name in self.tail_names:
            x = getattr(self, name)(x)
        return x

    def extra_repr(self) -> str:
        return f"tail={', '.join(self.tail_names)}"


def describe_tail(tail: list[tuple[str, nn.Module]]) -> tuple[str, ...]:
    """``("drop (Identity)", "act (SiLU)")``: the kept children, for a swap record."""
    return tuple(f"{name} ({type(child).__name__})" for name, child in tail)


def batch_norm_tail(module: _BatchNorm) -> list[tuple[str, nn.Module]]:
    """The children a swap of ``module`` must keep after the new norm (empty for a plain BN).

    Raises :class:`NormlabError` (without the layer's name: the caller adds it) when the layer's
    forward is not "batch norm, then its children in registration order".
    """
    if type(module) in PLAIN_BATCH_NORMS:
        return []
    children = list(module.named_children())
    expected = "batch norm" + "".join(f", then {name}" for name, _ in children)
    try:
        matches = _probe(module)
    except Exception as error:  # the user's forward, on a probe input: any failure refuses
        message = " ".join(str(error).split())
        raise NormlabError(
            f"cannot know what {type(module).__name__} does beyond normalizing (its forward "
            f"failed on a probe input: {type(error).__name__}: {message})"
        ) from None
    if not matches:
        raise NormlabError(
            f"cannot know what {type(module).__name__} does beyond normalizing (its forward is "
            f"not {expected})"
        )
    return children


@torch.no_grad()
def _probe(module: _BatchNorm) -> bool:
    """Whether ``module`` computes batch norm followed by its children, in eval and train mode."""
    probe = copy.deepcopy(module)
    reference = next(
        (t for t in (*probe.parameters(), *probe.buffers()) if t.is_floating_point()), None
    )
    dtype = reference.dtype if reference is not None else torch.float32
    device = reference.device if reference is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, dtype)

    channels = probe.num_features
    if probe.affine:
        probe.weight.copy_(1.0 + 0.5 * random(channels).abs())
        probe.bias.copy_(random(channels))
    if probe.running_mean is not None:
        probe.running_mean.copy_(random(channels))
        probe.running_var.copy_(0.5 + random(channels).abs())
    x = 0.5 + 2.0 * random(*_probe_shape(probe))
    # 100 machine epsilons: the same operations in the same order agree far closer; a layer
    # that does anything else (a scale, a shift, other statistics) differs by O(1).
    tolerance = 100 * torch.finfo(dtype).eps
    for training in (False, True):
        running = (probe.running_mean, probe.running_var)
        use_batch_statistics = training or probe.running_mean is None
        expected = F.batch_norm(
            x,
            None if running[0] is None else running[0].clone(),
            None if running[1] is None else running[1].clone(),
            probe.weight,
            probe.bias,
            use_batch_statistics,
            0.0,
            probe.eps,
        )
        probe.train(training)
        for _, child in probe.named_children():
            child.eval()  # dropout off: the probe compares deterministic functions
            expected = child(expected)
        actual = probe(x)
        if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
            return False
        if not torch.allclose(actual, expected, rtol=tolerance, atol=tolerance):
            return False
    return True


def _probe_shape(module: _BatchNorm) -> tuple[int, ...]:
    channels = module.num_features
    if isinstance(module, nn.BatchNorm1d):
        return (4, channels, 3)
    if isinstance(module, nn.BatchNorm3d):
        return (2, channels, 2, 3, 3)
    return (2, channels, 3, 3)
