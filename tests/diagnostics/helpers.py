"""Small models and data shared by the diagnostics tests."""

from __future__ import annotations

import torch
from torch import nn


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, cloned, to check a diagnostic changed nothing."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_state_unchanged(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    for name, value in snapshot.items():
        assert torch.equal(state[name], value), name


def small_cnn(
    norm: type[nn.Module] | None = nn.BatchNorm2d, channels: int = 8, num_classes: int = 4
) -> nn.Sequential:
    """conv-norm-ReLU x 2, global pool, linear: a tiny healthy classifier for 1x8x8 inputs."""

    def make_norm(width: int) -> nn.Module:
        if norm is None:
            return nn.Identity()
        if norm is nn.GroupNorm:
            return nn.GroupNorm(2, width)
        return norm(width)

    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        make_norm(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1),
        make_norm(channels),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, num_classes),
    )


def train_briefly(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, steps: int, lr: float = 0.1
) -> nn.Module:
    """Plain SGD for ``steps`` steps over ``x`` in order (deterministic), model left in eval."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for step in range(steps):
        start = (step * batch_size) % (len(x) - batch_size + 1)
        loss = nn.functional.cross_entropy(
            model(x[start : start + batch_size]), y[start : start + batch_size]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
