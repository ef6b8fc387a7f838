"""The dataset registry: names and paths, options every source takes, user registrations."""

import pytest
import torch

from normlab.data import DATASETS, digits, load_dataset, register_dataset, synthetic
from normlab.errors import NormlabError


def test_existing_calls_give_the_same_tensors():
    assert torch.equal(load_dataset("digits").x_train, digits().x_train)
    options = {"num_examples": 100, "num_classes": 4}
    assert torch.equal(load_dataset("synthetic", **options).x_val, synthetic(**options).x_val)


def test_subsets_of_a_builtin_are_balanced_fixed_and_keep_its_numbers():
    full = digits()
    small = load_dataset("digits", max_train_examples=55, max_eval_examples=20, val_fraction=0.3)
    assert small.sizes() == {"train": 55, "val": 20, "test": 20}
    counts = torch.bincount(small.y_train, minlength=10)
    assert counts.max() - counts.min() <= 1
    # The same standardized images, a subset of them (statistics of the full train split).
    rows = {tuple(image.flatten().tolist()) for image in full.x_train}
    assert all(tuple(image.flatten().tolist()) in rows for image in small.x_train)
    assert torch.equal(small.x_train, load_dataset("digits", max_train_examples=55).x_train)


def test_bad_subset_sizes_and_unknown_options_name_the_option():
    with pytest.raises(NormlabError, match="max_train_examples must be an integer >= the number"):
        load_dataset("digits", max_train_examples=5)
    with pytest.raises(NormlabError, match="max_eval_examples"):
        load_dataset("digits", max_eval_examples="all")
    with pytest.raises(NormlabError, match="dataset 'digits': unknown option 'seed'"):
        load_dataset("digits", seed=1)


def test_register_dataset_adds_a_name_load_dataset_finds():
    def tiny(num_examples: int = 60) -> object:
        return synthetic(num_examples=num_examples, num_classes=3)

    register_dataset("tiny-test", tiny, "1x8x8, three noisy patterns")
    try:
        assert DATASETS["tiny-test"][1] == "1x8x8, three noisy patterns"
        assert (
            load_dataset("tiny-test", num_examples=90, max_train_examples=30).sizes()["train"] == 30
        )
        with pytest.raises(NormlabError, match="unknown option 'size'"):
            load_dataset("tiny-test", size=3)
    finally:
        del DATASETS["tiny-test"]
    with pytest.raises(NormlabError, match="dataset name must be a non-empty string"):
        register_dataset("a/b", tiny, "")


def test_a_name_that_is_neither_registered_nor_a_path():
    with pytest.raises(
        NormlabError, match="unknown dataset 'cifar'; valid names: digits, synthetic, shapes"
    ):
        load_dataset("cifar")
