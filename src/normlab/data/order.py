"""The data order of a run: one function, shared by every engine.

Seed ``s`` gives every normalization the same sequence of mini-batches (paired design), and a
packed engine training K runs at once calls the same function per run to reproduce each run's
order exactly. The last incomplete mini-batch of each epoch is dropped (a final batch of one
sample crashes BatchNorm), and the same examples are dropped for every norm.
"""

from __future__ import annotations

import torch

from normlab.errors import NormlabError


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full mini-batches in one epoch (the remainder is dropped)."""
    if batch_size < 1:
        raise NormlabError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > num_examples:
        raise NormlabError(
            f"batch_size={batch_size} is larger than the training set ({num_examples})"
        )
    return num_examples // batch_size


def epoch_order(seed: int, epoch: int, num_examples: int, batch_size: int) -> torch.Tensor:
    """Indices (batches, batch_size) of the examples of ``epoch`` for a run seeded ``seed``.

    Depends only on (seed, epoch, num_examples, batch_size): not on the norm, the learning rate
    or anything else of the run, and not on global random state.
    """
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    permutation = torch.randperm(num_examples, generator=generator)
    count = batches_per_epoch(num_examples, batch_size)
    return permutation[: count * batch_size].view(count, batch_size)


def _mix(seed: int, epoch: int) -> int:
    # A fixed 64-bit mix so that (seed, epoch) pairs never collide for realistic values.
    return (seed * 1_000_003 + epoch * 7_919 + 0x5EED) % (2**63 - 1)
