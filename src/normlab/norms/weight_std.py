"""Weight Standardization (Qiao, Wang, Liu, Shen & Yuille 2019, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization"), paired with GroupNorm as ``gn_ws``.

The convolution's weight W (out, in, kh, kw) is standardized per output channel i before every
use: ``W_hat[i] = (W[i] - mean(W[i])) / sqrt(var(W[i]) + eps)`` with the mean and biased variance
over (in, kh, kw) (the paper's sigma_W = sqrt(mean(W^2) - mean(W)^2 + eps)). Gradients flow
through the standardization. The registry entry ``gn_ws`` is GroupNorm with
``weight_standardized_conv=True``: the model builder then makes the convolutions that feed it
:class:`WSConv2d`.
"""

from __future__ import annotations

import torch
from torch import nn


def standardize_weight(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit (biased) variance per output channel, over all other weight dimensions."""
    dims = tuple(range(1, weight.dim()))
    variance, mean = torch.var_mean(weight, dim=dims, correction=0, keepdim=True)
    return (weight - mean) / torch.sqrt(variance + eps)


class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardized per output channel in every forward pass."""

    def __init__(self, *args: object, eps: float = 1e-5, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, standardize_weight(self.weight, self.eps), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_standardized=True, eps={self.eps}"
