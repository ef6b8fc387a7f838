"""The CIFAR ResNets of He et al. 2016, "Deep Residual Learning for Image Recognition", Sec. 4.2.

Layout for 32x32 inputs (the paper's Table in Sec. 4.2), ``depth = 6n + 2``::

    conv3x3(16) -> norm -> ReLU                                     32x32, 16 channels
    n basic blocks, 16 channels                                     32x32
    n basic blocks, 32 channels (stride 2 in the first)             16x16
    n basic blocks, 64 channels (stride 2 in the first)              8x8
    global average pool -> [dropout] -> linear

A basic block is ``ReLU(norm(conv3x3(ReLU(norm(conv3x3(x))))) + shortcut(x))``. Shortcuts are
the paper's option A: the identity, and where the shape changes, spatial subsampling by stride
2 and zero entries for the new channels, so shortcuts add no parameter. Convolutions have no
bias (a norm follows each one; with ``norm="none"`` the network simply has none). Every
convolution gets He initialization (He et al. 2015, ``W ~ N(0, 2 / fan_out)``, the form of the
authors' Torch code and torchvision); norms keep their own (gamma 1, beta 0); the linear layer
keeps PyTorch's.

ResNet-20 (n = 3) with ``bn`` and 10 classes has 269,722 parameters, the paper's "0.27M". The
272,474 some reference implementations print is ResNet-20 with option B shortcuts instead: a
1x1 projection convolution + BN at the two stage transitions adds 16*32 + 32*64 + 2*(32 + 64) =
2,752 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from normlab.errors import NormlabError
from normlab.norms import make_norm, norm_entry

from .blocks import conv2d, conv_weight
from .dropout import SeededDropout

CIFAR_WIDTHS = (16, 32, 64)
"""Channels of the three stages (He et al. 2016, Sec. 4.2)."""


class ShortcutA(nn.Module):
    """Option A shortcut: ``x[:, :, ::s, ::s]`` with ``out - in`` zero channels appended.

    Parameter-free. ``x[::2]`` keeps ceil(H / 2) rows, the size a 3x3 convolution with stride 2
    and padding 1 produces, so the two paths always add up.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise NormlabError(
                f"option A shortcut cannot shrink channels ({in_channels} -> {out_channels})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads the last dimensions first: (W left, W right, H left, H right, C front, C back).
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv3x3 -> norm -> ReLU -> conv3x3 -> norm -> + shortcut -> ReLU (post-activation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm: str = "bn",
        norm_options: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        options = dict(norm_options or {})
        weight = conv_weight(norm)
        self.conv1 = conv2d(in_channels, out_channels, 3, stride, bias=False, weight=weight)
        self.norm1 = make_norm(norm, out_channels, **options)
        self.conv2 = conv2d(out_channels, out_channels, 3, bias=False, weight=weight)
        self.norm2 = make_norm(norm, out_channels, **options)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ShortcutA(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem, three stages of ``blocks_per_stage`` basic blocks, average pool, dropout, linear."""

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        in_channels: int = 3,
        norm: str = "bn",
        norm_options: Mapping[str, object] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        options = dict(norm_options or {})
        weight = conv_weight(norm)
        self.stem = nn.Sequential(
            conv2d(in_channels, CIFAR_WIDTHS[0], 3, bias=False, weight=weight),
            make_norm(norm, CIFAR_WIDTHS[0], **options),
            nn.ReLU(),
        )
        stages = []
        channels = CIFAR_WIDTHS[0]
        for stage, width in enumerate(CIFAR_WIDTHS):
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, norm=norm, norm_options=options))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.stages(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(out, 1)))


def cifar_resnet(
    depth: int = 20,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: str = "bn",
    norm_options: Mapping[str, object] | None = None,
    dropout: float = 0.0,
) -> CifarResNet:
    """He et al. 2016's CIFAR ResNet of ``depth = 6n + 2`` layers (20, 32, 44, 56, 110, ...)."""
    norm_entry(norm)  # unknown names fail here, with the list of valid ones
    blocks_per_stage, remainder = divmod(depth - 2, 6)
    if blocks_per_stage < 1 or remainder:
        raise NormlabError(
            f"cifar_resnet: depth={depth} is not 6n + 2; valid depths: 8, 14, 20, 26, 32, ..."
        )
    if not 0.0 <= dropout < 1.0:
        raise NormlabError(f"cifar_resnet: dropout must be in [0, 1), got {dropout}")
    return CifarResNet(blocks_per_stage, num_classes, in_channels, norm, norm_options, dropout)


def resnet20(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: str = "bn",
    norm_options: Mapping[str, object] | None = None,
    dropout: float = 0.0,
) -> CifarResNet:
    """ResNet-20 (n = 3): 269,722 parameters with ``bn`` and 10 classes (0.27M)."""
    return cifar_resnet(
        20,
        num_classes=num_classes,
        in_channels=in_channels,
        norm=norm,
        norm_options=norm_options,
        dropout=dropout,
    )


def resnet32(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: str = "bn",
    norm_options: Mapping[str, object] | None = None,
    dropout: float = 0.0,
) -> CifarResNet:
    """ResNet-32 (n = 5): 464,154 parameters with ``bn`` and 10 classes."""
    return cifar_resnet(
        32,
        num_classes=num_classes,
        in_channels=in_channels,
        norm=norm,
        norm_options=norm_options,
        dropout=dropout,
    )


def resnet56(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: str = "bn",
    norm_options: Mapping[str, object] | None = None,
    dropout: float = 0.0,
) -> CifarResNet:
    """ResNet-56 (n = 9): 853,018 parameters with ``bn`` and 10 classes."""
    return cifar_resnet(
        56,
        num_classes=num_classes,
        in_channels=in_channels,
        norm=norm,
        norm_options=norm_options,
        dropout=dropout,
    )
