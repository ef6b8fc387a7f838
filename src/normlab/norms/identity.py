"""``none``: no normalization, an identity that still answers ``.weight`` and ``.bias``.

Code written for normalized models often touches the last norm of a residual branch (torchvision's
``zero_init_residual`` does ``nn.init.constant_(bn.weight, 0)``); ``nn.Identity`` has no such
attribute. ``NoNorm`` keeps ``weight`` and ``bias`` as ``None`` attributes so such code fails
no louder than it would on a norm with ``affine=False``, and contributes no parameters (the
write-up's block without normalization has exactly 73,856 trainable parameters).
"""

from __future__ import annotations

import torch
from torch import nn


class NoNorm(nn.Identity):
    """Identity in place of a normalization layer."""

    def __init__(self, num_channels: int = 0, **_ignored: object) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.weight = None
        self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


def no_norm(num_channels: int) -> NoNorm:
    """``none``: identity."""
    return NoNorm(num_channels)
