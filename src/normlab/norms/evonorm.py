"""EvoNorm-S0 and EvoNorm-B0 (Liu, Brock, Simonyan & Le 2020, "Evolving Normalization-Activation
Layers"): normalization and activation in one layer, found by architecture search.

S0 (sample-based, no batch statistics), per sample, with G groups of channels::

    y = x * sigmoid(v * x) / group_std(x) * gamma + beta

B0 (batch-based)::

    y = x / max(sqrt(batch_var(x) + eps), v * x + instance_std(x)) * gamma + beta

``group_std`` is sqrt(var + eps) over the C/G channels of a group and all spatial positions of one
sample; ``instance_std`` the same over the spatial positions of one channel of one sample;
``batch_var`` the variance over the batch and spatial positions of each channel. All variances
are biased (``tf.nn.moments`` in the paper's reference code), eps = 1e-5, v is a learned vector
initialized to ones, gamma to ones, beta to zeros. B0 keeps a running average of ``batch_var``
(updated with the biased variance, as the TensorFlow reference does) and uses it at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from .batch import check_batch_size
from .errors import NormlabError
from .group import resolve_groups


def _channel_shape(x: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


def group_std(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """sqrt(biased variance + eps) of each sample over each group of channels, shaped like x."""
    batch, channels = x.shape[:2]
    variance = x.reshape(batch, groups, -1).var(dim=2, correction=0)
    std = torch.sqrt(variance + eps).repeat_interleave(channels // groups, dim=1)
    return std.view(batch, channels, *([1] * (x.dim() - 2)))


def instance_std(x: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(biased variance + eps) of each channel of each sample over its spatial positions."""
    spatial = tuple(range(2, x.dim()))
    if not spatial:  # one position: zero variance
        return torch.full_like(x, eps).sqrt()
    return torch.sqrt(x.var(dim=spatial, correction=0, keepdim=True) + eps)


class _EvoNorm(nn.Module):
    def __init__(self, num_channels: int, eps: float) -> None:
        super().__init__()
        if not eps > 0.0:
            raise NormlabError(f"evonorm: eps must be > 0, got {eps}")
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.v = nn.Parameter(torch.ones(num_channels))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.v)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise NormlabError(
                f"{type(self).__name__} expects (N, C, ...) input, got shape {tuple(x.shape)}"
            )


class EvoNormS0(_EvoNorm):
    """EvoNorm-S0: ``x * sigmoid(v x) / group_std(x) * gamma + beta``; per-sample statistics."""

    def __init__(self, num_channels: int, groups: int | None = None, eps: float = 1e-5) -> None:
        super().__init__(num_channels, eps)
        self.groups = resolve_groups("evonorm_s0", num_channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        shape = _channel_shape(x)
        numerator = x * torch.sigmoid(self.v.view(shape) * x)
        out = numerator / group_std(x, self.groups, self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"


class EvoNormB0(_EvoNorm):
    """EvoNorm-B0: ``x / max(sqrt(batch_var + eps), v x + instance_std(x)) * gamma + beta``.

    Training uses the mini-batch variance and updates ``running_var <- (1 - m) running_var +
    m batch_var``; inference uses ``running_var``.
    """

    def __init__(self, num_channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(num_channels, eps)
        if not 0.0 <= momentum <= 1.0:
            raise NormlabError(f"evonorm_b0: momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.register_buffer("running_var", torch.ones(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        check_batch_size(self, x)
        shape = _channel_shape(x)
        if self.training:
            dims = [0, *range(2, x.dim())]
            variance = x.var(dim=dims, correction=0)
            with torch.no_grad():
                self.running_var.lerp_(variance.to(self.running_var.dtype), self.momentum)
        else:
            variance = self.running_var.to(x.dtype)
        batch_std = torch.sqrt(variance + self.eps).view(shape)
        denominator = torch.maximum(batch_std, self.v.view(shape) * x + instance_std(x, self.eps))
        return x / denominator * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, momentum={self.momentum}, eps={self.eps}"


def evonorm_s0(num_channels: int, **options: object) -> EvoNormS0:
    """``evonorm_s0``: EvoNorm-S0 with gn's default number of groups."""
    return EvoNormS0(num_channels, **options)


def evonorm_b0(num_channels: int, **options: object) -> EvoNormB0:
    """``evonorm_b0``: EvoNorm-B0 with a running batch variance for inference."""
    return EvoNormB0(num_channels, **options)
