"""Weight Standardization (Qiao, Wang, Liu, Shen & Yuille 2019, "Micro-Batch Training with
Batch-Channel Normalization and Weight Standardization"), paired with GroupNorm as ``gn_ws``.

:class:`CenteredConv2d` is the centring half alone, for ``mabn``.

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


def centralize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Zero mean per output channel, over all other weight dimensions (no rescaling)."""
    return weight - weight.mean(dim=tuple(range(1, weight.dim())), keepdim=True)


class CenteredConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose filters are centralized (each minus its mean) in every forward pass:
    the weight centralization the MABN paper (Yan et al. 2020, Sec. 4.3, the authors'
    ``CenConv2d``) pairs with MABN, whose normalization does not subtract a mean; centred
    filters keep that dropped mean near 0. Gradients flow through the centring."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, centralize_weight(self.weight), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", centered=True"


class WSConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardized per output channel in every forward pass."""

    def __init__(self, *args: object, eps: float = 1e-5, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, standardize_weight(self.weight, self.eps), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_standardized=True, eps={self.eps}"
