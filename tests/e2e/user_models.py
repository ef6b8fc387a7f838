"""Model factories as a user writes them, referenced by path from the end-to-end tests."""

import torch
from torch import nn

import normlab


def with_norm(num_classes, in_channels, norm, norm_options=None):
    """Takes ``norm``: builds the requested normalization itself."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        normlab.make_norm(norm, 8, **(norm_options or {})),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def plain_bn(num_classes, in_channels):
    """No ``norm`` argument: its BatchNorm2d is swapped by normlab to reach other norms."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def no_norm(num_classes, in_channels):
    """Nothing to vary: refused for a study of norms."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


class _Raises(nn.Module):
    def forward(self, x):
        # In training only: the eval-mode probe of the planning checks passes, training fails.
        if self.training:
            raise RuntimeError("this model cannot train with GroupNorm")
        return x


def fails_with_gn(num_classes, in_channels, norm, norm_options=None):
    """Builds for every norm, but its gn variant raises in training: a failed run."""
    model = with_norm(num_classes, in_channels, norm, norm_options)
    return nn.Sequential(_Raises(), model) if norm == "gn" else model


def three_channels(num_classes):
    """Takes no ``in_channels``: a network for RGB images, whatever the data."""
    return plain_bn(num_classes, 3)


class _Concat(nn.Module):
    """torch.cat of two branches, flatten and dropout: what issue 25 asks a general packer to
    handle in a user's forward."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.wide = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.point = nn.Conv2d(in_channels, 4, 1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        h = nn.functional.relu(self.bn(torch.cat([self.wide(x), self.point(x)], dim=1)))
        return self.fc(self.drop(h.mean(dim=(2, 3)).flatten(1)))


def concat_dropout(num_classes, in_channels):
    """A small user model (concatenation, flatten, dropout) for `normlab bench --model`."""
    return _Concat(num_classes, in_channels)
