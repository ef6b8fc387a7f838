"""The write-up's residual block, in PyTorch with Keras semantics.

The source defines one post-activation block three times (BatchNormalization, no normalization,
LayerNormalization)::

    Conv2D(filters, k, padding="same")      # bias on
    Norm -> ReLU
    Conv2D(filters, k, padding="same")      # bias on
    Norm
    Add([shortcut, x]) -> ReLU

``seed_block`` builds exactly that with the normalization chosen by registry name. Where the
input channels differ from ``filters`` (or ``stride`` > 1) the shortcut is a 1x1 projection
convolution: the write-up adds a 3-channel input to a 64-channel output, which fails in Keras.

Two normalization-free variants keep that block and add scalars around its residual branch
(``models/init.py`` chooses them by ``init`` and initializes them):

- :class:`SkipInitBlock` (De & Smith 2020, SkipInit): ``ReLU(alpha * branch(x) + shortcut(x))``
  with a learnable scalar ``alpha = 0`` at initialization.
- :class:`FixupBlock` (Zhang, Dauphin & Ma 2019, Fixup): scalar biases before each convolution
  and element-wise activation and a scalar multiplier at the end of the branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from normlab.norms import CenteredConv2d, WSConv2d, make_norm, norm_entry

from .dropout import SeededDropout

DROPOUT_POSITIONS = ("head", "before_norm", "after_norm")
"""Where ``dropout`` acts: before the classifier only, or in every block before/after each norm."""


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    bias: bool = True,
    weight: str | None = None,
) -> nn.Conv2d:
    """Keras ``Conv2D(padding="same")`` for odd kernels (bias on, like Keras's default).

    ``weight="standardized"`` gives a :class:`~normlab.norms.WSConv2d` (Qiao et al. 2019),
    ``weight="centered"`` a :class:`~normlab.norms.CenteredConv2d` (Yan et al. 2020), for
    convolutions that feed a norm whose registry entry asks for it (:func:`conv_weight`).
    """
    conv_class = {None: nn.Conv2d, "standardized": WSConv2d, "centered": CenteredConv2d}[weight]
    return conv_class(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
    )


def conv_weight(norm: str) -> str | None:
    """The ``weight`` of :func:`conv2d` for convolutions feeding ``norm``: ``standardized``
    (registry ``weight_standardized_conv``: gn_ws), ``centered`` (``centered_conv``: mabn), or
    None (a plain convolution)."""
    entry = norm_entry(norm)
    if entry.weight_standardized_conv:
        return "standardized"
    return "centered" if entry.centered_conv else None


class SeedBlock(nn.Module):
    """Post-activation residual block: conv -> norm -> ReLU -> conv -> norm -> +shortcut -> ReLU."""

    def __init__(
        self,
        in_channels: int,
        filters: int,
        norm: str = "bn",
        kernel_size: int = 3,
        stride: int = 1,
        norm_options: Mapping[str, object] | None = None,
        dropout: float = 0.0,
        dropout_position: str = "head",
    ) -> None:
        super().__init__()
        options = dict(norm_options or {})
        # Both convolutions feed a norm; gn_ws needs them weight-standardized (the shortcut's
        # projection feeds the addition, not a norm, and stays a plain convolution).
        weight = conv_weight(norm)
        self.conv1 = conv2d(in_channels, filters, kernel_size, stride, weight=weight)
        self.norm1 = make_norm(norm, filters, **options)
        self.conv2 = conv2d(filters, filters, kernel_size, weight=weight)
        self.norm2 = make_norm(norm, filters, **options)
        self.relu = nn.ReLU()
        block_dropout = dropout if dropout_position != "head" else 0.0
        self.dropout = SeededDropout(block_dropout) if block_dropout > 0 else nn.Identity()
        self.dropout_before_norm = dropout_position == "before_norm"
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != filters or stride != 1:
            self.shortcut = conv2d(in_channels, filters, 1, stride)

    def _normalize(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # Li et al. 2019 ("disharmony between dropout and BN"): dropout right before a BN shifts
        # the variance BN sees between training and inference; the position is a study factor.
        if self.dropout_before_norm:
            return norm(self.dropout(x))
        return self.dropout(norm(x))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch: conv -> norm -> ReLU -> conv -> norm."""
        out = self.relu(self._normalize(self.norm1, self.conv1(x)))
        return self._normalize(self.norm2, self.conv2(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


class SkipInitBlock(SeedBlock):
    """Seed block whose residual branch is scaled by a learnable scalar, zero at initialization.

    De & Smith 2020, "Batch Normalization Biases Residual Blocks Towards the Identity Function
    in Deep Networks" (SkipInit)::

        out = ReLU(alpha * branch(x) + shortcut(x)),    alpha = 0 at initialization

    At initialization the block is ``ReLU(shortcut(x))``: exactly ``x`` for an identity shortcut
    and a non-negative input (every block's input here is the output of a ReLU). Works with any
    normalization: the scalar stands in for what BN does to the branch (down-weight it against
    the skip path), so with a norm it simply adds that bias towards the identity. Weights are set
    by :func:`normlab.models.init.initialize` (He initialization), not here.
    """

    def __init__(self, in_channels: int, filters: int, **options: Any) -> None:
        super().__init__(in_channels, filters, **options)
        self.branch_scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch_scale * self.branch(x) + self.shortcut(x))


class FixupBlock(SeedBlock):
    """Seed block with Fixup's scalar biases and multiplier (for ``norm="none"``).

    Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without Normalization",
    rule 3: a scalar bias (0 at initialization) before each convolution and element-wise
    activation, and a scalar multiplier (1 at initialization) in every branch::

        u   = x + a1
        h   = ReLU(norm1(conv1(u)) + a2)
        r   = s * norm2(conv2(h + a3)) + a4
        out = ReLU(r + shortcut)        shortcut = x, or projection(u) where channels change

    (the authors' reference applies ``a1`` to the input of a parameterized shortcut too). The
    convolutions keep the seed block's per-channel biases, so ``a2`` and ``a4`` span directions
    those biases already span; they are kept because Fixup's point is their optimization effect
    (one scalar gathers the gradient of every channel and position). Weights are set by
    :func:`normlab.models.init.initialize_fixup`, not here.
    """

    def __init__(self, in_channels: int, filters: int, **options: Any) -> None:
        super().__init__(in_channels, filters, **options)
        self.bias_before_conv1 = nn.Parameter(torch.zeros(1))
        self.bias_before_relu = nn.Parameter(torch.zeros(1))
        self.bias_before_conv2 = nn.Parameter(torch.zeros(1))
        self.branch_scale = nn.Parameter(torch.ones(1))
        self.bias_before_add = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x + self.bias_before_conv1
        out = self._normalize(self.norm1, self.conv1(shifted))
        out = self.relu(out + self.bias_before_relu)
        out = self._normalize(self.norm2, self.conv2(out + self.bias_before_conv2))
        out = self.branch_scale * out + self.bias_before_add
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(shifted)
        return self.relu(out + shortcut)


class ScalarBias(nn.Module):
    """``x + b`` with one learnable scalar ``b`` (0 at initialization): Fixup's bias, used by the
    ResNet before its stem ReLU and before its classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def seed_block(
    in_channels: int,
    filters: int,
    norm: str = "bn",
    kernel_size: int = 3,
    **options: object,
) -> SeedBlock:
    """The write-up's block with normalization ``norm`` (any registry name).

    With ``in_channels == filters == 64``: 74,112 trainable parameters for ``bn``/``bn_keras``
    (plus 256 running-statistic values), 73,856 for ``none``, as in Keras.
    """
    return SeedBlock(in_channels, filters, norm=norm, kernel_size=kernel_size, **options)
