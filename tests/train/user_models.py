"""Model factories as a user writes them, imported by tests/train/test_model_ref.py as
``user_models:<factory>`` (not a test module: pytest does not collect it)."""

from __future__ import annotations

from typing import Any

from torch import nn

from normlab.norms import make_norm

CALLS: list[dict[str, Any]] = []
"""Arguments each factory call received, for the tests to inspect."""


def bn_net(num_classes: int, in_channels: int = 1) -> nn.Module:
    """A user's ConvNet with its own BatchNorm layers (eps 1e-3) and no ``norm`` argument."""
    CALLS.append({"num_classes": num_classes, "in_channels": in_channels})
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8, eps=1e-3),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8, eps=1e-3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def norm_net(
    num_classes: int, in_channels: int, norm: str = "bn", norm_options: dict | None = None
) -> nn.Module:
    """A ConvNet that builds the requested normalization itself."""
    CALLS.append({"num_classes": num_classes, "norm": norm, "norm_options": norm_options})
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        make_norm(norm, 8, **(norm_options or {})),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def kwargs_net(**kwargs: Any) -> nn.Module:
    """Takes everything normlab offers."""
    CALLS.append(dict(kwargs))
    return norm_net(kwargs["num_classes"], kwargs["in_channels"], kwargs.get("norm", "bn"))


def plain_net(num_classes: int) -> nn.Module:
    """No normalization layer at all."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


class Net(nn.Module):
    """A class is a factory too."""

    def __init__(self, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


def broken(num_classes: int) -> nn.Module:
    raise RuntimeError("out of\nmemory")


def not_a_model(num_classes: int) -> int:
    return num_classes


NOT_CALLABLE = 3
