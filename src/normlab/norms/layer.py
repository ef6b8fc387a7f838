"""Layer normalization (Ba et al. 2016) as Keras defines it for images, and over (C, H, W).

``ln`` is Keras ``LayerNormalization()`` (axis=-1 on NHWC data): every spatial position of every
sample is normalized across its channels,
``y[n, :, h, w] = gamma * (x[n, :, h, w] - mean_c) / sqrt(var_c + eps) + beta`` with biased
variance, per-channel gamma and beta, eps = 1e-3. ``ln_chw`` normalizes each sample over all of
(C, H, W) instead: that is GroupNorm with one group (see ``group.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """Normalize each position across channels (Keras ``LayerNormalization(axis=-1)``).

    Input (N, C, *spatial); statistics over C only; affine gamma, beta of shape (C,).
    """

    def __init__(self, num_channels: int, eps: float = 1e-3, affine: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def reset_parameters(self) -> None:
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm normalizes trailing dims, so move channels last and back (channels-last
        # is exactly Keras's layout for this layer). The result is copied back to NCHW order:
        # left channels-last, it reaches the next convolution in that memory format, and
        # torch 2.13's oneDNN backward of a strided 1x1 convolution over channels-last input
        # with fewer input channels than its vector width (8 floats on AVX2, 16 on AVX-512)
        # writes past its gradient buffer (heap corruption: an abort, or silently altered
        # tensors elsewhere). See docs/BENCHMARKS.md, "A oneDNN heap overflow".
        moved = x.movedim(1, -1)
        out = F.layer_norm(moved, (self.num_channels,), self.weight, self.bias, self.eps)
        return out.movedim(-1, 1).contiguous()

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"


def layer_norm_keras(num_channels: int, **options: object) -> ChannelLayerNorm:
    """``ln``: Keras LayerNormalization semantics (per position across channels, eps 1e-3)."""
    return ChannelLayerNorm(num_channels, **options)
