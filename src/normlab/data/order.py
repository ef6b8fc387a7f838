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

Correlated (non-i.i.d.) mini-batches, ``classes_per_batch = k`` (with ``shuffle`` only), the
setting in which Batch Renormalization (Ioffe, 2017, sec. 4.3) and Group Normalization (Wu & He,
2018) report BatchNorm degrading. Each epoch: each class's examples shuffled; with
``q, extra = divmod(batch_size, k)``, batches are drawn one at a time: every class is scored by
its number of unused examples plus a fresh uniform number in [0, 1) (a random tie-break), the
k best-scored classes are taken, the first ``extra`` of them give their next ``q + 1`` unused
examples and the others their next ``q``; drawing stops before the first batch these classes
cannot fill. Then the batches are shuffled, and the examples inside each batch. Guarantee:
every batch holds examples of exactly k distinct classes (q or q + 1 of each), every example
appears at most once per epoch, and there is at least one batch (or the call is refused).
Taking the fullest classes first keeps the most classes usable, so close to
``num_examples // batch_size`` batches are drawn when the classes are about equal in size;
with unequal classes an epoch can hold fewer batches (the engine counts steps, not epochs).
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
    classes_per_batch: int | None = None,
) -> torch.Tensor:
    """Indices (batches, batch_size) of the examples of ``epoch`` for a run seeded ``seed``.

    Depends only on (seed, epoch, num_examples, batch_size, sampler, labels): not on the norm,
    the learning rate or anything else of the run, and not on global random state. ``labels``
    (one class index per example) is required by ``balanced`` and by ``classes_per_batch``, and
    ignored otherwise. With ``classes_per_batch = k`` every batch is drawn from exactly k classes
    and there may be fewer than ``num_examples // batch_size`` batches (module docstring).
    """
    check_sampler(sampler)
    count = batches_per_epoch(num_examples, batch_size)
    generator = torch.Generator().manual_seed(_mix(seed, epoch))
    if classes_per_batch is not None:
        if sampler != "shuffle":
            raise NormlabError(
                f"classes_per_batch works with sampler 'shuffle' only, not {sampler!r}"
            )
        _check_labels("classes_per_batch", labels, num_examples)
        return _classes_per_batch(labels, batch_size, classes_per_batch, generator)  # type: ignore[arg-type]
    if sampler == "shuffle":
        permutation = torch.randperm(num_examples, generator=generator)
        return permutation[: count * batch_size].view(count, batch_size)
    _check_labels("sampler 'balanced'", labels, num_examples)
    stream = _round_robin(labels, generator)
    batches = stream[: count * batch_size].view(count, batch_size)
    return batches[torch.randperm(count, generator=generator)]


def _check_labels(what: str, labels: torch.Tensor | None, num_examples: int) -> None:
    if labels is None:
        raise NormlabError(f"{what} needs the labels of the training examples")
    if labels.shape != (num_examples,):
        raise NormlabError(
            f"{what}: labels must have shape ({num_examples},), got {tuple(labels.shape)}"
        )


def _classes_per_batch(
    labels: torch.Tensor, batch_size: int, k: object, generator: torch.Generator
) -> torch.Tensor:
    """Batches of exactly ``k`` classes each (the algorithm of the module docstring)."""
    classes = torch.unique(labels)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(classes):
        raise NormlabError(
            f"classes_per_batch must be an integer in 1..{len(classes)} (the number of "
            f"classes), got {k!r}"
        )
    if batch_size < k:
        raise NormlabError(
            f"classes_per_batch={k} needs batch_size >= {k} (one example per class), "
            f"got batch_size={batch_size}"
        )
    share, extra = divmod(batch_size, k)
    members = [torch.nonzero(labels == label).flatten() for label in classes]
    members = [m[torch.randperm(len(m), generator=generator)].tolist() for m in members]
    used = [0] * len(members)
    remaining = torch.tensor([len(m) for m in members], dtype=torch.float64)
    batches: list[list[int]] = []
    while True:
        scores = remaining + torch.rand(len(members), generator=generator, dtype=torch.float64)
        chosen = torch.argsort(scores, descending=True)[:k].tolist()
        takes = [share + 1] * extra + [share] * (k - extra)
        if any(remaining[c] < take for c, take in zip(chosen, takes, strict=True)):
            break
        batch = []
        for c, take in zip(chosen, takes, strict=True):
            batch.extend(members[c][used[c] : used[c] + take])
            used[c] += take
            remaining[c] -= take
        batches.append(batch)
    if not batches:
        raise NormlabError(
            f"classes_per_batch={k} with batch_size={batch_size}: too few examples per class to "
            "fill one batch"
        )
    order = torch.tensor(batches, dtype=torch.long)
    order = order[torch.randperm(len(order), generator=generator)]
    inside = torch.rand(order.shape, generator=generator).argsort(dim=1)
    return order.gather(1, inside)


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
