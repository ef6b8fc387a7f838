"""Datasets: fixed stratified splits, standardization with train statistics, clear errors."""

import numpy as np
import pytest
import torch

from normlab.data import digits, load_dataset, stratified_split, synthetic
from normlab.errors import NormlabError


def test_digits_shape_split_and_standardization():
    data = digits()
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert data.sizes() == {"train": 1078, "val": 359, "test": 360}
    # Standardized with train statistics: train has mean 0 and std 1 (float32 rounding).
    assert abs(float(data.x_train.mean())) < 1e-5
    assert abs(float(data.x_train.std()) - 1.0) < 1e-3
    # Stratified: every class appears in every split in about the same proportion.
    for split in (data.y_train, data.y_val, data.y_test):
        counts = torch.bincount(split, minlength=10).float()
        assert counts.min() / counts.max() > 0.9


def test_digits_split_is_fixed():
    first, second = digits(), digits()
    assert torch.equal(first.x_test, second.x_test)
    assert torch.equal(first.y_train, second.y_train)


def test_stratified_split_is_disjoint_and_complete():
    labels = np.repeat(np.arange(5), 20)
    train, val, test = stratified_split(labels, (0.6, 0.2, 0.2))
    together = np.concatenate([train, val, test])
    assert sorted(together.tolist()) == list(range(100))
    assert len(train) == 60 and len(val) == 20 and len(test) == 20


def test_synthetic_is_seeded_and_configurable():
    a = synthetic(num_examples=100, num_classes=5, channels=3, size=6, seed=4)
    b = synthetic(num_examples=100, num_classes=5, channels=3, size=6, seed=4)
    c = synthetic(num_examples=100, num_classes=5, channels=3, size=6, seed=5)
    assert a.input_shape == (3, 6, 6) and a.num_classes == 5
    assert torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_unknown_dataset_and_bad_option():
    with pytest.raises(NormlabError, match="valid names: digits, synthetic"):
        load_dataset("cifar")
    with pytest.raises(NormlabError, match="synthetic"):
        load_dataset("synthetic", pixels=3)
