"""Packed forms of normalization layers: the layers of K runs as ONE layer over K*C channels.

A packed model stacks K runs along the channel axis: run k owns channels ``[k*C, (k+1)*C)`` of
every activation (N, K*C, *spatial), and each run sees its own mini-batch in its own slice.
A norm packs exactly when every statistic it computes lies inside one run's slice; its registry
entry declares how (``NormEntry.packing``):

- ``channel``: statistics per channel (over the batch: bn, gbn, brn, evonorm_b0's variance) or
  per sample and channel (frn, evonorm_b0's instance std), fixed (frozen_bn) or none (``none``).
  The packed layer is the same layer over K*C channels with every per-channel tensor
  concatenated: channel c of run k is channel ``k*C + c``.
- ``group``: statistics per sample (or batch) and group of C/G consecutive channels (gn, gn_ws,
  in, ln_chw, evonorm_s0, bgn). The same layer with K*G groups: group g of run k is group
  ``k*G + g``, the same channels.
- ``position``: statistics over one run's C channels at each position (``ln``, Keras layer
  normalization): :class:`PackedChannelLayerNorm` normalizes the (N, K, C, *spatial) view over C.

Hyperparameters that are Python scalars of the layer (eps, momentum, virtual batch size, Batch
Renorm's schedule) must be equal across the K runs; scalar buffers (step counters) are shared
because every run takes the same number of training steps. A 0-d *parameter* (FRN's learned eps)
has no per-run slice: :func:`packing_problem` refuses it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layer import ChannelLayerNorm

PACKINGS = ("channel", "group", "position")
"""Valid values of ``NormEntry.packing`` (None: the norm cannot be packed)."""

_CHANNEL_ATTRIBUTES = ("num_features", "num_channels", "in_channels", "out_channels")
_GROUP_ATTRIBUTES = ("num_groups", "groups")


def packing_problem(layer: nn.Module) -> str | None:
    """Why ``layer`` cannot be stacked K times along its channels, or None if it can."""
    for name, parameter in layer.named_parameters():
        if parameter.ndim == 0:
            return f"{type(layer).__name__}.{name} is one scalar shared by all channels"
    return None


def stack_layers(layers: Sequence[nn.Module], group_attributes: bool = False) -> nn.Module:
    """The K ``layers`` (same type and options) as one layer over K times their channels.

    A copy of the first layer whose channel counts (and group counts when ``group_attributes``)
    are multiplied by K and whose tensors are the K layers' tensors concatenated along their
    first dimension; 0-d buffers (step counters) are taken from the first layer.
    """
    count = len(layers)
    packed = copy.deepcopy(layers[0])
    scaled = _CHANNEL_ATTRIBUTES + (_GROUP_ATTRIBUTES if group_attributes else ())
    for attribute in scaled:
        value = getattr(packed, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(packed, attribute, value * count)
    with torch.no_grad():
        for name, parameter in layers[0].named_parameters(recurse=False):
            stacked = torch.cat([getattr(layer, name).detach() for layer in layers])
            setattr(packed, name, nn.Parameter(stacked, requires_grad=parameter.requires_grad))
        for name, buffer in layers[0].named_buffers(recurse=False):
            if buffer is None or buffer.ndim == 0:
                continue
            packed.register_buffer(name, torch.cat([getattr(layer, name) for layer in layers]))
    return packed


@torch.no_grad()
def unstack_into(packed: nn.Module, index: int, count: int, layer: nn.Module) -> None:
    """Copy slice ``index`` of ``count`` of the stacked ``packed`` layer's tensors into ``layer``
    (the inverse of :func:`stack_layers` for one run)."""
    tensors = dict(packed.named_parameters(recurse=False)) | dict(
        packed.named_buffers(recurse=False)
    )
    for name, target in [
        *layer.named_parameters(recurse=False),
        *layer.named_buffers(recurse=False),
    ]:
        if target is None:
            continue
        source = tensors[name]
        if target.ndim == 0:
            target.copy_(source)
        else:
            target.copy_(source.reshape(count, -1)[index].view_as(target))


class PackedChannelLayerNorm(nn.Module):
    """K runs' :class:`~normlab.norms.ChannelLayerNorm` layers over (N, K*C, *spatial) inputs.

    Each position of each run is normalized across that run's C channels (Ba et al. 2016, Keras
    axis=-1), then scaled and shifted by the run's own gamma and beta, stored (K*C,).
    """

    def __init__(self, layers: Sequence[ChannelLayerNorm]) -> None:
        super().__init__()
        first = layers[0]
        self.count = len(layers)
        self.num_channels = first.num_channels
        self.eps = first.eps
        self.affine = first.affine
        if self.affine:
            self.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]))
            self.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]))
        else:
            self.weight = self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, spatial = x.shape[0], x.shape[2:]
        runs = x.view(batch, self.count, self.num_channels, *spatial).movedim(2, -1)
        out = F.layer_norm(runs, (self.num_channels,), None, None, self.eps)
        if self.affine:
            # (K, 1, ..., 1, C): each run's gamma and beta against (N, K, *spatial, C).
            shape = (self.count, *([1] * len(spatial)), self.num_channels)
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.movedim(-1, 2).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{self.count} x {self.num_channels}, eps={self.eps}, affine={self.affine}"


def pack_norm(packing: str, layers: Sequence[nn.Module]) -> nn.Module:
    """The packed layer of K runs' norm ``layers`` for the registry's ``packing``."""
    if packing == "channel":
        return stack_layers(layers)
    if packing == "group":
        return stack_layers(layers, group_attributes=True)
    if packing == "position":
        return PackedChannelLayerNorm(layers)
    raise ValueError(f"packing must be one of {PACKINGS}, got {packing!r}")
