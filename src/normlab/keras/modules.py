"""The PyTorch modules that carry Keras arithmetic over to normlab's NCHW tensors.

A Keras image tensor is (N, H, W, C), normlab's is (N, C, H, W); a tensor without spatial axes
is (N, C) in both. Every module here takes normlab's layout and computes what its Keras layer
computes on the channels-last one. The layouts differ in element *order* only, so the only
places where the order shows are the ones that permute: :class:`KerasFlatten` (Keras flattens
in (H, W, C) order, so its Dense weights expect that order), :class:`KerasDense` on a tensor with
spatial axes (Keras applies it to the last, channel, axis) and :class:`KerasConcatenate` (its
Keras axis is mapped to the NCHW dimension).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras (TensorFlow) ``padding="same"`` along one axis: ``(before, after)``.

    The output has ``ceil(size / stride)`` positions; the total padding that needs is split
    with the odd element *after* (bottom / right), where PyTorch's symmetric ``padding`` cannot
    put it.
    """
    extent = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel, stride, dilation=(1, 1)) -> tuple[int, int, int, int]:
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1], dilation[1])
    return left, right, top, bottom  # F.pad order: last dimension first


class KerasConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras's ``padding="same"`` where it is asymmetric (strides > 1, even
    kernels): the padding depends on the input size, so it is computed at each call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _pads(x, self.kernel_size, self.stride, self.dilation))
        return super().forward(x)


class KerasPool2d(nn.Module):
    """``MaxPooling2D`` / ``AveragePooling2D`` with Keras's ``valid`` or ``same`` padding.

    With ``same``, Keras pads max pooling with -inf and averages only over the input positions
    a window covers (the padding is not counted), like TensorFlow.
    """

    def __init__(self, kind: str, pool_size, strides, same: bool) -> None:
        super().__init__()
        self.kind, self.pool_size, self.strides, self.same = kind, pool_size, strides, same

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            if self.same:
                x = F.pad(x, _pads(x, self.pool_size, self.strides), value=-math.inf)
            return F.max_pool2d(x, self.pool_size, self.strides)
        if not self.same:
            return F.avg_pool2d(x, self.pool_size, self.strides)
        pads = _pads(x, self.pool_size, self.strides)
        total = F.avg_pool2d(F.pad(x, pads), self.pool_size, self.strides, divisor_override=1)
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(F.pad(ones, pads), self.pool_size, self.strides, divisor_override=1)
        return total / count

    def extra_repr(self) -> str:
        padding = "same" if self.same else "valid"
        return f"{self.kind}, pool_size={self.pool_size}, strides={self.strides}, {padding}"


class KerasDense(nn.Linear):
    """``Dense``: on (N, C) as ``nn.Linear``; on a tensor with spatial axes Keras applies it to
    the channel axis, so channels are moved last for the product and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return super().forward(x)
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class KerasFlatten(nn.Module):
    """``Flatten`` in Keras's element order: (H, W, C), so the permutation to channels-last
    happens here (the following Dense's weights are Keras's, rows in that order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.movedim(1, -1)
        return x.flatten(1)


class GlobalAveragePool(nn.Module):
    """``GlobalAveragePooling2D``: the mean over H and W (``keepdims`` keeps them as 1 x 1)."""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=self.keepdims)


class KerasAdd(nn.Module):
    """``Add``: the sum of its inputs, in Keras's order."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return total


class KerasConcatenate(nn.Module):
    """``Concatenate(axis)``: Keras's axis of a channels-last tensor mapped to NCHW (the last
    axis is channels, dimension 1; a spatial axis moves one place right)."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        rank = inputs[0].dim()
        axis = self.axis % rank
        dim = 1 if axis == rank - 1 else (0 if axis == 0 else axis + 1)
        return torch.cat(inputs, dim=dim)

    def extra_repr(self) -> str:
        return f"keras_axis={self.axis}"


class ZeroPadding(nn.Module):
    """``ZeroPadding2D(((top, bottom), (left, right)))``."""

    def __init__(self, top: int, bottom: int, left: int, right: int) -> None:
        super().__init__()
        self.pads = (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)

    def extra_repr(self) -> str:
        left, right, top, bottom = self.pads
        return f"top={top}, bottom={bottom}, left={left}, right={right}"


class Rescaling(nn.Module):
    """``Rescaling(scale, offset)``: ``x * scale + offset``, each a scalar or one value per
    channel (Keras broadcasts those over its last axis, channels)."""

    def __init__(self, scale: torch.Tensor, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._channel(self.scale, x) + self._channel(self.offset, x)

    @staticmethod
    def _channel(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return value if value.dim() == 0 else value.view(-1, *[1] * (x.dim() - 2))


class KerasReLU(nn.Module):
    """``ReLU(max_value, negative_slope, threshold)`` as Keras computes it:
    ``f(x) = x`` above ``threshold`` (``relu(x)`` when it is 0), clipped to [0, max_value] when
    that is set, minus ``negative_slope * relu(threshold - x)``."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Keras keeps x above a nonzero threshold as it is (negative too), else relu(x).
        out = x * (x > self.threshold).to(x.dtype) if self.threshold != 0 else F.relu(x)
        if self.max_value is not None:
            out = out.clamp(0.0, self.max_value)
        if self.negative_slope != 0:
            out = out - self.negative_slope * F.relu(self.threshold - x)
        return out

    def extra_repr(self) -> str:
        return (
            f"max_value={self.max_value}, negative_slope={self.negative_slope}, "
            f"threshold={self.threshold}"
        )


ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),  # Keras's axis -1 (channels) is dimension 1 in NCHW
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,  # Keras's gelu is exact (approximate=False) by default, as nn.GELU
    "elu": nn.ELU,
}
"""Keras activation names with their exact PyTorch module (``linear`` is no module)."""
