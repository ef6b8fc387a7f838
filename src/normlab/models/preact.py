"""Pre-activation ResNet-18 for 32x32 inputs (He et al. 2016, "Identity Mappings in Deep
Residual Networks").

Pre-activation moves norm and ReLU in front of each convolution, so the shortcut path carries
``x`` untouched from block to block (the paper's Eq. 4: ``x_L = x_l + sum F(x_i)``). This is the
common CIFAR variant of the ImageNet ResNet-18: a 3x3 stem convolution with 64 channels and no
max pool, four stages of two pre-activation basic blocks (64, 128, 256, 512 channels, stride 2
in the first block of stages 2-4), a final norm + ReLU (the last block's output is not
activated, Sec. 4.1 of the paper), global average pool and linear. A block::

    out = ReLU(norm1(x))
    shortcut = x, or conv1x1(out) with stride where the shape changes (projection)
    out = conv3x3(ReLU(norm2(conv3x3(out)))) + shortcut

Convolutions have no bias; every convolution gets He initialization (``W ~ N(0, 2 / fan_out)``).
11,172,170 parameters with ``bn`` and 10 classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.norms import make_norm, norm_entry

from .blocks import conv2d, conv_weight
from .dropout import SeededDropout

PREACT_WIDTHS = (64, 128, 256, 512)
PREACT_BLOCKS = (2, 2, 2, 2)


class PreActBlock(nn.Module):
    """Pre-activation basic block: norm -> ReLU -> conv3x3 -> norm -> ReLU -> conv3x3, + shortcut."""

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
        self.norm1 = make_norm(norm, in_channels, **options)
        self.conv1 = conv2d(in_channels, out_channels, 3, stride, bias=False, weight=weight)
        self.norm2 = make_norm(norm, out_channels, **options)
        self.conv2 = conv2d(out_channels, out_channels, 3, bias=False, weight=weight)
        self.relu = nn.ReLU()
        # The projection feeds the addition, not a norm: a plain convolution even for gn_ws.
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(x))
        # A projection sees the pre-activated input, as in the paper's code (fb.resnet.torch).
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.norm2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv, stages of pre-activation blocks, final norm + ReLU, average pool, linear."""

    def __init__(
        self,
        blocks_per_stage: tuple[int, ...] = PREACT_BLOCKS,
        num_classes: int = 10,
        in_channels: int = 3,
        norm: str = "bn",
        norm_options: Mapping[str, object] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        options = dict(norm_options or {})
        weight = conv_weight(norm)
        channels = PREACT_WIDTHS[0]
        # No norm after the stem: the first block's norm1 pre-activates it.
        self.stem = conv2d(in_channels, channels, 3, bias=False, weight=weight)
        stages = []
        for stage, (width, count) in enumerate(zip(PREACT_WIDTHS, blocks_per_stage, strict=True)):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(PreActBlock(channels, width, stride, norm=norm, norm_options=options))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_norm = make_norm(norm, channels, **options)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = SeededDropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.final_norm(self.stages(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(out), 1)))


def preact_resnet18(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    norm: str = "bn",
    norm_options: Mapping[str, object] | None = None,
    dropout: float = 0.0,
) -> PreActResNet:
    """Pre-activation ResNet-18 for 32x32 inputs: 11,172,170 parameters with ``bn``, 10 classes."""
    norm_entry(norm)  # unknown names fail here, with the list of valid ones
    if not 0.0 <= dropout < 1.0:
        raise NormlabError(f"preact_resnet18: dropout must be in [0, 1), got {dropout}")
    return PreActResNet(PREACT_BLOCKS, num_classes, in_channels, norm, norm_options, dropout)
