"""Shared fixtures: small, fast data and configs (tests make their own data)."""

from __future__ import annotations

import pytest
import torch

from normlab.data import synthetic
from normlab.train import RunConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # Tests share 2 cores with each other; one torch thread keeps timings and numbers stable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_data():
    return synthetic(num_examples=200, num_classes=4, size=8, noise=0.8, seed=0)


@pytest.fixture
def tiny_config() -> RunConfig:
    return RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
        depth=8,
        widths=(4, 8, 8),
        batch_size=8,
        lr=0.05,
        epochs=2,
    )
