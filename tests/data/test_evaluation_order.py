"""Evaluation draws: every example once, batches drawn as training draws them, fixed seed."""

import pytest
import torch

from normlab.data import evaluation_batches, evaluation_permutation
from normlab.errors import NormlabError


def _class_sorted_labels(classes: int = 10, per_class: int = 30) -> torch.Tensor:
    return torch.arange(classes).repeat_interleave(per_class)


@pytest.mark.parametrize(
    ("sampler", "classes_per_batch"), [("shuffle", None), ("balanced", None), ("shuffle", 2)]
)
@pytest.mark.parametrize("batch_size", [2, 7, 16, 300, 1000])
def test_every_example_once_and_no_batch_of_one(sampler, classes_per_batch, batch_size):
    labels = _class_sorted_labels()
    batches = evaluation_batches(
        len(labels), batch_size, sampler, labels=labels, classes_per_batch=classes_per_batch
    )
    assert sorted(torch.cat(batches).tolist()) == list(range(len(labels)))
    assert all(len(batch) >= 2 for batch in batches)
    # Only joins make a batch larger than batch_size, by one example.
    assert max(len(batch) for batch in batches) <= max(batch_size, 2) + 1
    again = evaluation_batches(
        len(labels), batch_size, sampler, labels=labels, classes_per_batch=classes_per_batch
    )
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))  # fixed seed


def test_shuffle_mixes_a_class_sorted_source():
    labels = _class_sorted_labels()
    first = evaluation_batches(len(labels), 16)[0]
    assert len(torch.unique(labels[first])) > 4  # stored order: one class per batch


def test_classes_per_batch_draws_that_many_classes():
    labels = _class_sorted_labels()
    batches = evaluation_batches(len(labels), 16, labels=labels, classes_per_batch=2)
    classes = [len(torch.unique(labels[batch])) for batch in batches]
    assert max(classes) <= 3  # 2, or 3 where a batch of one joined its neighbour
    # 30 = 3 x 8 + 6 per class: three full draws of every class (15 batches of 2 classes, 8 of
    # each), then what the classes have left, 6 each, in batches of 2 classes.
    full = [b for b in batches if len(b) == 16]
    assert len(full) == 15
    assert [len(b) for b in batches if len(b) != 16] == [12] * 5
    assert all(torch.bincount(labels[b]).max() == 8 for b in full)


def test_balanced_batches_hold_every_class():
    labels = _class_sorted_labels()
    for batch in evaluation_batches(len(labels), 20, "balanced", labels=labels):
        assert torch.equal(torch.bincount(labels[batch], minlength=10), torch.full((10,), 2))


def test_permutation_is_a_fixed_random_subset():
    labels = _class_sorted_labels(10, 300)
    permutation = evaluation_permutation(len(labels))
    assert sorted(permutation.tolist()) == list(range(3000))
    assert torch.equal(permutation, evaluation_permutation(len(labels)))
    # The first 1,024 of a class-sorted source hold classes 0-3 (and some of 4); the first
    # 1,024 of the permutation hold all ten.
    assert len(torch.unique(labels[:1024])) == 4
    assert len(torch.unique(labels[permutation[:1024]])) == 10


def test_labels_are_required_by_label_samplers():
    with pytest.raises(NormlabError, match="label"):
        evaluation_batches(10, 2, "balanced")
    with pytest.raises(NormlabError, match="shuffle"):
        evaluation_batches(10, 2, "balanced", labels=torch.zeros(10), classes_per_batch=1)
    with pytest.raises(NormlabError, match="batch_size"):
        evaluation_batches(10, 0)
    assert evaluation_batches(0, 4) == []
