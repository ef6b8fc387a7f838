"""A ResNet built from the write-up's seed blocks, with the normalization as a parameter.

Layout: stem ``conv3x3 -> norm -> ReLU``; stages of seed blocks, each stage after the first
halving the spatial size in its first block (1x1 projection shortcut); global average pool;
dropout (position "head"); linear classifier. ``depth`` counts weighted layers as in He et al.
2016 (CIFAR ResNets): ``depth = 2 * blocks + 2`` over all stages, so depth 20 with three stages
is three blocks per stage.

``init`` (see ``models/init.py``) picks the block and the initialization: ``default`` (seed
blocks, PyTorch's initialization), ``skipinit`` or ``fixup``. With ``fixup`` the network also
gets Fixup's scalar biases before the stem ReLU and before the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.norms import make_norm, norm_entry

from .blocks import DROPOUT_POSITIONS, ScalarBias, conv2d, conv_weight
from .dropout import SeededDropout
from .init import block_class, check_init, initialize


class ResNet(nn.Module):
    """Stem, stages of residual blocks, global average pool, dropout, linear head."""

    def __init__(
        self,
        norm: str,
        widths: Sequence[int],
        blocks_per_stage: int,
        num_classes: int,
        in_channels: int,
        dropout: float = 0.0,
        dropout_position: str = "head",
        norm_options: Mapping[str, object] | None = None,
        kernel_size: int = 3,
        init: str = "default",
    ) -> None:
        super().__init__()
        options = dict(norm_options or {})
        fixup = init == "fixup"
        self.init = init
        stem: list[nn.Module] = [
            conv2d(
                in_channels,
                widths[0],
                kernel_size,
                weight=conv_weight(norm),
            ),
            make_norm(norm, widths[0], **options),
        ]
        # Fixup: a scalar bias before every element-wise activation, the stem's ReLU included.
        stem += [ScalarBias(), nn.ReLU()] if fixup else [nn.ReLU()]
        self.stem = nn.Sequential(*stem)
        block = block_class(init)
        blocks = []
        channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(
                    block(
                        channels,
                        width,
                        norm=norm,
                        kernel_size=kernel_size,
                        stride=stride,
                        norm_options=options,
                        dropout=dropout,
                        dropout_position=dropout_position,
                    )
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        head_dropout = dropout if dropout_position == "head" else 0.0
        self.dropout = SeededDropout(head_dropout) if head_dropout > 0 else nn.Identity()
        # Fixup: a scalar bias before the linear classifier too.
        self.head_bias: nn.Module = ScalarBias() if fixup else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        initialize(self, init, self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(self.head_bias(self.dropout(torch.flatten(self.pool(out), 1))))


def resnet(
    norm: str = "bn",
    depth: int = 8,
    widths: Sequence[int] = (16, 32, 64),
    num_classes: int = 10,
    in_channels: int = 1,
    dropout: float = 0.0,
    dropout_position: str = "head",
    norm_options: Mapping[str, object] | None = None,
    kernel_size: int = 3,
    init: str = "default",
) -> ResNet:
    """Build a ResNet of ``depth`` weighted layers from seed blocks normalized by ``norm``.

    ``depth - 2`` must be a positive multiple of ``2 * len(widths)``. ``init``: ``default``,
    ``skipinit`` (any norm) or ``fixup`` (``norm="none"`` only); see ``models/init.py``.
    """
    norm_entry(norm)  # unknown names fail here, with the list of valid ones
    check_init(init, norm)
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise NormlabError(f"resnet: widths must be positive integers, got {widths}")
    per_stage, remainder = divmod(depth - 2, 2 * len(widths))
    if per_stage < 1 or remainder:
        raise NormlabError(
            f"resnet: depth={depth} is not 2 + 2 * blocks * stages for {len(widths)} stages; "
            f"valid depths: {', '.join(str(2 + 2 * len(widths) * b) for b in range(1, 5))}, ..."
        )
    if not 0.0 <= dropout < 1.0:
        raise NormlabError(f"resnet: dropout must be in [0, 1), got {dropout}")
    if dropout_position not in DROPOUT_POSITIONS:
        raise NormlabError(
            f"resnet: dropout_position={dropout_position!r}; valid: {', '.join(DROPOUT_POSITIONS)}"
        )
    return ResNet(
        norm,
        widths,
        per_stage,
        num_classes,
        in_channels,
        dropout=dropout,
        dropout_position=dropout_position,
        norm_options=norm_options,
        kernel_size=kernel_size,
        init=init,
    )
