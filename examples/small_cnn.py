"""A small user model, as a user writes one: two convolution stages, a concatenation of two
branches, flatten and dropout. Reference it by path:

    normlab bench --model examples/small_cnn.py:small_cnn
    normlab run --data shapes --model examples/small_cnn.py:small_cnn --dry-run

It has BatchNorm2d layers and no ``norm`` argument: normlab swaps them to reach other norms.
"""

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.wide = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.point = nn.Conv2d(in_channels, 16, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64 * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(torch.cat([self.wide(x), self.point(x)], dim=1)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.fc(self.drop(self.pool(h).flatten(1)))


def small_cnn(num_classes: int, in_channels: int) -> nn.Module:
    return SmallCNN(num_classes, in_channels)
