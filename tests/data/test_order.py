"""The seeded data order: same seed, same batches, for every norm; remainder dropped."""

import pytest

from normlab.data import batches_per_epoch, epoch_order
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
