"""Group normalization (Wu & He 2018) and its special cases ``ln_chw`` (G = 1) and ``in`` (G = C).

``y = gamma * (x - mu_g) / sqrt(sigma_g^2 + eps) + beta`` where mu_g, sigma_g^2 are the mean and
biased variance of each sample over the C/G channels of its group and all spatial positions;
gamma and beta are per channel. G = 1 normalizes over (C, H, W) (``ln_chw``); G = C is
InstanceNorm (Ulyanov et al. 2016) with a learned affine transform (``in``).
"""

from __future__ import annotations

from torch import nn

from .errors import NormlabError

DEFAULT_GROUPS = 8


def default_groups(num_channels: int) -> int:
    """Largest divisor of ``num_channels`` that is at most 8 (8 for the usual widths)."""
    return max(g for g in range(1, DEFAULT_GROUPS + 1) if num_channels % g == 0)


def resolve_groups(name: str, num_channels: int, groups: int | None) -> int:
    """``groups``, or :func:`default_groups` when None; a :class:`NormlabError` unless it divides C.

    Shared by every grouped normalization (``gn``, ``gn_ws``, ``evonorm_s0``, ``bgn``); ``name``
    is the registry name quoted in the message.
    """
    if groups is None:
        return default_groups(num_channels)
    if (
        isinstance(groups, bool)
        or not isinstance(groups, int)
        or groups < 1
        or num_channels % groups
    ):
        raise NormlabError(
            f"{name}: groups={groups!r} does not divide num_channels={num_channels}; "
            f"choose a divisor of {num_channels}"
        )
    return groups


def group_norm(
    num_channels: int, groups: int | None = None, eps: float = 1e-5, affine: bool = True
) -> nn.GroupNorm:
    """``gn``: GroupNorm with ``groups`` groups (default: 8, fewer when channels are few)."""
    groups = resolve_groups("gn", num_channels, groups)
    return nn.GroupNorm(groups, num_channels, eps=eps, affine=affine)


def layer_norm_chw(num_channels: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """``ln_chw``: normalize each sample over (C, H, W); GroupNorm with one group."""
    return nn.GroupNorm(1, num_channels, eps=eps, affine=affine)


def instance_norm(num_channels: int, eps: float = 1e-5, affine: bool = True) -> nn.GroupNorm:
    """``in``: InstanceNorm, each channel of each sample over its spatial positions (G = C).

    ``y[n, c] = gamma_c * (x[n, c] - mean_hw) / sqrt(var_hw + eps) + beta_c`` (biased variance),
    the same statistics in training and inference (no running averages), like ``nn.InstanceNorm2d``
    with ``affine=True``.
    """
    return nn.GroupNorm(num_channels, num_channels, eps=eps, affine=affine)
