"""The built-in shapes task: 3x32x32, seeded, class-defined by shape and texture."""

import numpy as np
import pytest
import torch

from normlab.data import DATASETS, load_dataset
from normlab.data.shapes import shapes_arrays
from normlab.errors import NormlabError


def test_shapes_is_registered_with_its_input_shape():
    assert "3x32x32" in DATASETS["shapes"][1]
    assert all("x" in description for _, description in DATASETS.values())


def test_default_split_and_per_channel_standardization():
    data = load_dataset("shapes", num_examples=600)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert data.sizes() == {"train": 360, "val": 120, "test": 120}
    train = data.x_train.double()
    assert train.mean(dim=(0, 2, 3)).abs().max() < 1e-6
    assert (train.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-5


def test_seeded_and_options_change_the_images():
    first, _ = shapes_arrays(100, seed=3)
    again, _ = shapes_arrays(100, seed=3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, shapes_arrays(100, seed=4)[0])
    clean, _ = shapes_arrays(100, noise=0.0, seed=3)
    assert (first - clean).std() == pytest.approx(0.2, rel=0.05)


def test_classes_are_balanced_and_images_vary_within_a_class():
    images, labels = shapes_arrays(400, num_classes=10, noise=0.0, seed=0)
    assert np.bincount(labels).tolist() == [40] * 10
    # Position, scale, rotation and colours vary: no two noise-free images of a class agree.
    members = images[labels == 0].reshape(40, -1)
    distances = np.abs(members[:, None] - members[None]).mean(axis=2)
    assert distances[~np.eye(40, dtype=bool)].min() > 0.01


def test_bad_options_are_refused():
    with pytest.raises(NormlabError, match="shapes: need 2 <= num_classes <= 20"):
        load_dataset("shapes", num_classes=21)
    with pytest.raises(NormlabError, match="unknown option 'colour'"):
        load_dataset("shapes", colour=1)
    assert torch.is_tensor(load_dataset("shapes", num_examples=100, num_classes=20).x_test)
