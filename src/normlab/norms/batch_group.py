"""Batch-group normalization (Summers & Dinneen 2020, "Four Things Everyone Should Know to
Improve Batch Normalization", ICLR 2020; arXiv 1906.03548), the paper's fourth technique.

For very small batches the paper combines Batch and Group Normalization: statistics are computed
over the whole mini-batch *and* a group of channels. (Not to be confused with Zhou et al. 2020,
also called "Batch Group Normalization", which is a different layer.) With the channels split into G groups and
g(c) the group of channel c, in training::

    mu_g, sigma_g^2 = mean and biased variance of x[n, c', *spatial]
                      over all samples n, all channels c' in group g, all spatial positions
    y[n, c] = gamma_c * (x[n, c] - mu_g(c)) / sqrt(sigma_g(c)^2 + eps) + beta_c

so each statistic uses N * (C/G) * H * W values: G = C is BatchNorm, N = 1 would be GroupNorm.
Because the training statistics depend on the batch, inference uses running averages of the
per-group statistics, updated like BN's (``r <- (1 - m) r + m s_B``, unbiased variance in
``running_var``, PyTorch's convention); ``running_mean`` and ``running_var`` have shape (G,).

The layer is not a ``_BatchNorm`` (its statistics are per group, not per channel), so
``swap_norm`` does not treat it as a BN to replace and ``recalibrate_bn`` leaves it alone.
Like every batch-statistics layer here it refuses a training batch of one sample (use ``gn``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batch import check_batch_size
from .errors import NormlabError
from .group import resolve_groups


class BatchGroupNorm(nn.Module):
    """Normalize over (batch, group of channels, spatial) in training; running stats at inference.

    Args:
        num_channels: C.
        groups: G, a divisor of C (default: gn's default, at most 8).
        momentum: weight of the new batch statistic in the running averages.
        eps: added to the variance.
        affine: learn per-channel gamma and beta.
    """

    def __init__(
        self,
        num_channels: int,
        groups: int | None = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise NormlabError(f"bgn: momentum must be in [0, 1], got {momentum}")
        self.num_channels = num_channels
        self.groups = resolve_groups("bgn", num_channels, groups)
        self.momentum = momentum
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(self.groups))
        self.register_buffer("running_var", torch.ones(self.groups))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def reset_parameters(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise NormlabError(
                f"bgn expects (N, {self.num_channels}, ...) input, got shape {tuple(x.shape)}"
            )
        check_batch_size(self, x)
        # Viewed as (N, G, rest), BN's per-"channel" statistics over (N, rest) are exactly the
        # batch-and-group statistics; F.batch_norm also updates the running buffers.
        grouped = x.reshape(x.shape[0], self.groups, -1)
        normalized = F.batch_norm(
            grouped,
            self.running_mean,
            self.running_var,
            None,
            None,
            self.training,
            self.momentum,
            self.eps,
        ).reshape(x.shape)
        if self.training:
            self.num_batches_tracked.add_(1)
        if not self.affine:
            return normalized
        shape = [1, -1] + [1] * (x.dim() - 2)
        return normalized * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_channels}, groups={self.groups}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}"
        )


def batch_group_norm(num_channels: int, **options: object) -> BatchGroupNorm:
    """``bgn``: statistics over the batch and groups of channels (Summers & Dinneen 2020)."""
    return BatchGroupNorm(num_channels, **options)
