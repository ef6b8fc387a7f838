"""The seeded data order: same seed, same batches, for every norm; remainder dropped; samplers."""

import pytest
import torch

from normlab.data import SAMPLERS, batches_per_epoch, epoch_order
from normlab.errors import NormlabError


def test_order_depends_only_on_seed_epoch_and_sizes():
    assert epoch_order(3, 1, 50, 4).equal(epoch_order(3, 1, 50, 4))
    assert not epoch_order(3, 1, 50, 4).equal(epoch_order(4, 1, 50, 4))
    assert not epoch_order(3, 1, 50, 4).equal(epoch_order(3, 2, 50, 4))


def test_last_incomplete_batch_is_dropped():
    order = epoch_order(0, 0, 11, 2)
    assert order.shape == (5, 2)
    assert len(set(order.flatten().tolist())) == 10
    assert batches_per_epoch(11, 2) == 5


def test_batch_larger_than_data_is_refused():
    with pytest.raises(NormlabError, match="larger than the training set"):
        epoch_order(0, 0, 10, 11)


def test_unknown_sampler_is_refused():
    with pytest.raises(
        NormlabError, match="unknown sampler 'sequential'; valid: shuffle, balanced"
    ):
        epoch_order(0, 0, 10, 2, sampler="sequential")


# -- shuffle --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "epoch", "num_examples", "batch_size"), [(0, 0, 11, 2), (7, 3, 50, 8)]
)
def test_shuffle_is_the_seeded_permutation_runs_were_trained_with(
    seed, epoch, num_examples, batch_size
):
    # Stored runs (and their results) were trained on exactly this order: it must never change.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + 0x5EED)
    permutation = torch.randperm(num_examples, generator=generator)
    count = num_examples // batch_size
    expected = permutation[: count * batch_size].view(count, batch_size)
    labels = torch.arange(num_examples) % 3
    assert epoch_order(seed, epoch, num_examples, batch_size).equal(expected)
    assert epoch_order(seed, epoch, num_examples, batch_size, "shuffle", labels).equal(expected)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_order_leaves_the_global_random_state_alone(sampler):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    epoch_order(1, 2, 40, 4, sampler, labels=torch.arange(40) % 4)
    assert torch.rand(3).equal(expected)


# -- balanced -------------------------------------------------------------------------------


def class_counts(order: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(batches, classes) counts of each class in each batch."""
    return torch.nn.functional.one_hot(labels[order], classes).sum(dim=1)


def shuffled_labels(sizes: list[int], seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((size,), c) for c, size in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize("batch_size", [2, 3, 4, 6, 8, 10, 13])
def test_balanced_batches_of_equal_classes_differ_by_at_most_one_per_class(batch_size):
    labels = shuffled_labels([15, 15, 15, 15])
    for epoch in range(3):
        counts = class_counts(epoch_order(5, epoch, 60, batch_size, "balanced", labels), labels, 4)
        assert (counts.max(dim=1).values - counts.min(dim=1).values <= 1).all()
        # No class more than ceil(batch_size / 4) times: once when batch_size < 4 classes.
        assert (counts <= max(1, -(-batch_size // 4))).all()


@pytest.mark.parametrize("batch_size", [2, 3, 4, 7, 8])
def test_balanced_with_unequal_classes_keeps_the_stated_guarantee(batch_size):
    sizes = [30, 20, 7, 13]  # smallest class m = 7, K = 4 classes
    labels = shuffled_labels(sizes, seed=1)
    order = epoch_order(2, 0, len(labels), batch_size, "balanced", labels)
    counts = class_counts(order, labels, 4)
    balanced = counts.max(dim=1).values - counts.min(dim=1).values <= 1
    assert int(balanced.sum()) >= 4 * 7 // batch_size


@pytest.mark.parametrize("batch_size", [2, 5, 8])
def test_balanced_uses_each_example_at_most_once_and_drops_only_the_remainder(batch_size):
    labels = shuffled_labels([30, 20, 7, 14], seed=2)  # 71 examples: a remainder for all sizes
    for epoch in range(2):
        order = epoch_order(0, epoch, 71, batch_size, "balanced", labels)
        assert order.shape == (71 // batch_size, batch_size)
        flat = order.flatten().tolist()
        assert len(set(flat)) == len(flat) and min(flat) >= 0 and max(flat) < 71


def test_balanced_is_deterministic_and_differs_across_seeds_and_epochs():
    labels = shuffled_labels([10, 10, 10])
    order = epoch_order(3, 1, 30, 6, "balanced", labels)
    assert order.equal(epoch_order(3, 1, 30, 6, "balanced", labels.clone()))
    assert not order.equal(epoch_order(4, 1, 30, 6, "balanced", labels))
    assert not order.equal(epoch_order(3, 2, 30, 6, "balanced", labels))
    assert not order.equal(epoch_order(3, 1, 30, 6, "shuffle", labels))


def test_balanced_takes_any_class_labels():
    labels = torch.tensor([9, 0, 5] * 8)  # classes need not be 0..K-1
    order = epoch_order(0, 0, 24, 3, "balanced", labels)
    assert all(sorted(labels[batch].tolist()) == [0, 5, 9] for batch in order)


def test_balanced_needs_labels_of_every_example():
    with pytest.raises(NormlabError, match="sampler 'balanced' needs the labels"):
        epoch_order(0, 0, 10, 2, "balanced")
    with pytest.raises(NormlabError, match=r"labels must have shape \(10,\), got \(9,\)"):
        epoch_order(0, 0, 10, 2, "balanced", torch.zeros(9, dtype=torch.long))


# -- classes_per_batch ----------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "k"), [(2, 1), (2, 2), (8, 2), (10, 3), (16, 4)])
def test_classes_per_batch_gives_exactly_k_classes_and_each_example_once(batch_size, k):
    labels = shuffled_labels([30, 30, 25, 30, 20], seed=3)
    for epoch in range(2):
        order = epoch_order(1, epoch, len(labels), batch_size, labels=labels, classes_per_batch=k)
        assert order.shape[1] == batch_size and 1 <= len(order) <= len(labels) // batch_size
        assert all(len(set(labels[batch].tolist())) == k for batch in order)
        flat = order.flatten().tolist()
        assert len(set(flat)) == len(flat)


def test_classes_per_batch_uses_nearly_every_example_of_equal_classes():
    labels = shuffled_labels([40] * 10)
    order = epoch_order(0, 0, 400, 8, labels=labels, classes_per_batch=2)
    assert len(order) == 50  # 400 // 8: nothing lost when the classes divide evenly


def test_classes_per_batch_is_deterministic_and_differs_across_seeds_and_epochs():
    labels = shuffled_labels([20, 20, 20, 20])
    order = epoch_order(3, 1, 80, 4, labels=labels, classes_per_batch=2)
    assert order.equal(epoch_order(3, 1, 80, 4, labels=labels.clone(), classes_per_batch=2))
    assert not order.equal(epoch_order(3, 2, 80, 4, labels=labels, classes_per_batch=2))
    assert not order.equal(epoch_order(4, 1, 80, 4, labels=labels, classes_per_batch=2))


@pytest.mark.parametrize(
    ("batch_size", "k", "sampler", "message"),
    [
        (4, 0, "shuffle", r"classes_per_batch must be an integer in 1\.\.3"),
        (4, 4, "shuffle", r"classes_per_batch must be an integer in 1\.\.3"),
        (2, 3, "shuffle", "needs batch_size >= 3"),
        (4, 2, "balanced", "classes_per_batch works with sampler 'shuffle' only"),
        (20, 1, "shuffle", "too few examples per class to fill one batch"),
    ],
)
def test_impossible_classes_per_batch_is_refused(batch_size, k, sampler, message):
    labels = shuffled_labels([10, 10, 10])
    with pytest.raises(NormlabError, match=message):
        epoch_order(0, 0, 30, batch_size, sampler, labels=labels, classes_per_batch=k)
    with pytest.raises(NormlabError, match="classes_per_batch needs the labels"):
        epoch_order(0, 0, 30, 4, classes_per_batch=2)
