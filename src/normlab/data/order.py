"""The data order of a run: one function, shared by every engine.

Seed ``s`` gives every normalization the same sequence of mini-batches (paired design), and a
packed engine training K runs at once calls the same function per run to reproduce each run's
order exactly. The last incomplete mini-batch of each epoch is dropped (a final batch of one
sample crashes BatchNorm), and the same examples are dropped for every norm.

Samplers (``RunConfig.sampler``):

- ``shuffle``: a fresh uniform permutation each epoch, cut into batches.
- ``balanced``: class-balanced batches. Each epoch: a random class order; each class's examples
  shuffled; the classes interleaved round-robin in that order (a class that runs out drops out
  of the rotation, the others keep their order); the stream cut into batches (remainder
  dropped); the batches shuffled. Every example appears at most once per epoch. Guarantee: two
  classes that are both still in the rotation when a batch ends hold the same number of its
  examples, give or take one. So, with K classes and m examples in the smallest, at least
  ``K * m // batch_size`` batches hold every class ``batch_size // K`` or ``batch_size // K + 1``
  times (every batch when the classes are equal in size); the batches after the smallest class
  runs out are balanced over the classes left. One class order per epoch means that when
  ``batch_size < K`` the classes that share a batch are the same throughout an epoch (they
  change across epochs).
"""

from __future__ import annotations

import torch

from normlab.errors import NormlabError

SAMPLERS = ("shuffle", "balanced")
"""Batch samplers :func:`epoch_order` knows."""


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full mini-batches in one epoch (the remainder is dropped)."""
    if batch_size < 1:
        raise NormlabError(f"batch_size must be >= 1, got {batch_size}")
    if batch_size > num_examples:
        raise NormlabError(
            f"batch_size={batch_size} is larger than the training set ({num_examples})"
        )
    return num_examples // batch_size


def check_sampler(sampler: str) -> None:
    """Refuse a sampler name :func:`epoch_order` does not know."""
    if sampler not in SAMPLERS:
        raise NormlabError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")


def epoch_order(
    seed: int,
    epoch: int,
    num_examples: int,
    batch_size: int,
    sampler: str = "shuffle",
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices (batches, batch_size) of the examples of ``epoch`` for a run seeded ``seed``.

    Depends only on (seed, epoch, num_examples, batch_size, sampler, labels): not on the norm,
    the learning rate or anything else of the run, and not on global random state. ``labels``
    (one class index per example) is required by ``balanced`` and ignored by ``shuffle``.
    """
    check_sampler(sampler)
    count = batches_per_epoch(num_examples, batch_size)
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    if sampler == "shuffle":
        permutation = torch.randperm(num_examples, generator=generator)
        return permutation[: count * batch_size].view(count, batch_size)
    if labels is None:
        raise NormlabError("sampler 'balanced' needs the labels of the training examples")
    if labels.shape != (num_examples,):
        raise NormlabError(
            f"sampler 'balanced': labels must have shape ({num_examples},), "
            f"got {tuple(labels.shape)}"
        )
    stream = _round_robin(labels, generator)
    batches = stream[: count * batch_size].view(count, batch_size)
    return batches[torch.randperm(count, generator=generator)]


def _round_robin(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Every example once: classes in a random order, one example of each per round."""
    classes = torch.unique(labels)
    classes = classes[torch.randperm(len(classes), generator=generator)]
    members = [torch.nonzero(labels == label).flatten() for label in classes]
    members = [m[torch.randperm(len(m), generator=generator)] for m in members]
    # Row r of the table is round r; reading it row by row, skipping the holes of classes that
    # ran out, is the round-robin stream.
    table = torch.full((max(len(m) for m in members), len(members)), -1, dtype=torch.long)
    for column, indices in enumerate(members):
        table[: len(indices), column] = indices
    stream = table.flatten()
    return stream[stream >= 0]


def _mix(seed: int, epoch: int) -> int:
    # A fixed 64-bit mix so that (seed, epoch) pairs never collide for realistic values.
    return (seed * 1_000_003 + epoch * 7_919 + 0x5EED) % (2**63 - 1)
