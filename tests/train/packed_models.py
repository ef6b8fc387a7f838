"""Models as users write them, for the general packer's tests (``tests/train/test_packed_func.py``
loads this file as ``--model packed_models.py:<factory>``; pytest does not collect it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms import make_norm


class TwoBranchNet(nn.Module):
    """Two convolution branches joined by ``torch.cat`` on channels, a norm over the joined
    channels, plain ``nn.Dropout`` (the global stream) and ``view`` to features."""

    def __init__(self, num_classes: int, in_channels: int, norm: str, norm_options: dict) -> None:
        super().__init__()
        self.left = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.right = nn.Conv2d(in_channels, 4, 1)
        self.norm = make_norm(norm, 8, **norm_options)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(8 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm(torch.cat([self.left(x), self.right(x)], dim=1)))
        out = F.adaptive_avg_pool2d(out, 2)
        out = self.drop(out.view(out.shape[0], -1))
        return self.head(torch.flatten(out, 1))


def two_branch_net(
    num_classes: int, in_channels: int, norm: str = "bn", norm_options: dict | None = None
) -> nn.Module:
    return TwoBranchNet(num_classes, in_channels, norm, dict(norm_options or {}))


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's ``BatchNormAct2d`` in brief: ``act(drop(batch_norm(x)))`` with child modules."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


def act_norm_net(num_classes: int, in_channels: int) -> nn.Module:
    """A ConvNet whose norms carry their activation (swapped by ``swap_norm`` keeping the tail)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 3, padding=1, bias=False),
        BatchNormAct2d(6),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, bias=False),
        BatchNormAct2d(6),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, num_classes),
    )


class NoisyNet(nn.Module):
    """Gaussian noise drawn in ``forward`` from the global stream: no run's own stream exists."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = x + 0.1 * torch.randn_like(x)
        return self.fc(torch.flatten(x, 1))


def noisy_net(num_classes: int, in_channels: int, norm: str = "none") -> nn.Module:
    return NoisyNet(num_classes, in_channels)


def lazy_net(num_classes: int, in_channels: int, norm: str = "none") -> nn.Module:
    """A lazy layer: its weights are drawn at the first forward, from the global stream."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
