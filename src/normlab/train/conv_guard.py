"""A guard against a heap overflow in torch 2.13's oneDNN convolution backward on the CPU.

The backward (input gradient) of a 1x1 convolution with stride > 1, over an input in
channels-last memory format with fewer input channels than oneDNN's vector width (8 floats on
AVX2, 16 on AVX-512), writes past the end of its gradient buffer (oneDNN's ``brgconv_strided``
kernel writes whole padded channel blocks into an unpadded NHWC tensor). The result is heap
corruption: an abort ("malloc(): smallbin double linked list corrupted"), or, where the
overwritten memory belongs to live tensors, silently altered numbers elsewhere in the process.

Channels-last activations appear whenever a layer normalizes over channels by moving them last
(normlab's ``ln`` did; timm's ``LayerNorm2d`` does), and the next block's projection shortcut is
exactly such a convolution. normlab's own ``ln`` now returns NCHW order; this guard covers user
models: a forward pre-hook hands those convolutions a contiguous (NCHW) copy of a channels-last
input on the CPU, which is numerically the same convolution. Reproduction and measurements:
docs/BENCHMARKS.md, "A oneDNN heap overflow".
"""

from __future__ import annotations

from torch import nn


def _contiguous_input(module: nn.Module, inputs: tuple) -> tuple | None:
    x = inputs[0]
    if x.device.type == "cpu" and not x.is_contiguous():
        return (x.contiguous(), *inputs[1:])
    return None


def guard_strided_pointwise_convolutions(model: nn.Module) -> int:
    """Register the guard on every strided 1x1 ``nn.Conv2d`` of ``model``; returns how many.

    Hooks are not kept by ``state_dict``; a model saved and loaded elsewhere has none.
    """
    guarded = 0
    for module in model.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.kernel_size == (1, 1)
            and max(module.stride) > 1
        ):
            module.register_forward_pre_hook(_contiguous_input)
            guarded += 1
    return guarded
