"""The order in which evaluation passes read data: never the stored order.

Stored order is often class-sorted (image folders are read class by class, and splits and
balanced subsets keep the source order): the first 1,024 training examples of a class-sorted
source of 10 x 300 images hold classes 0-4 only, and consecutive test examples form batches of
one class. Two passes depend on which examples share a batch, and read the data here instead:

- **PreciseBN** (``surgery.recalibrate_bn`` as the diagnostics and the doctor call it): its
  examples are the first ``limit`` of a fixed, seeded permutation of the training set (a random
  subset, not the first ones), cut into batches of the training batch size in that permuted
  order (:func:`evaluation_permutation`).
- **Batch-statistics evaluation** (every BN layer with the statistics of its evaluation
  mini-batch): every example exactly once, in mini-batches drawn as training draws them
  (:func:`evaluation_batches`): a seeded permutation for ``shuffle``, the class round-robin for
  ``balanced``, exactly ``classes_per_batch`` classes per batch where the examples allow.

Both draws use the fixed :data:`EVALUATION_SEED`, never the run's seed, as the split does:
every run of every study, packed or alone, is evaluated on the same batches (paired across
norms and seeds), and a pack evaluates all its runs with one forward per batch.
"""

from __future__ import annotations

import torch

from normlab.errors import NormlabError

from .order import _mix, _round_robin, check_sampler

EVALUATION_SEED = 0
"""Seed of the evaluation draws (PreciseBN's examples, batch-statistics evaluation batches)."""
_EVALUATION_STREAM = -1
"""The draws use the (seed, epoch = -1) stream of ``order._mix``: no training epoch's stream."""


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(_mix(seed, _EVALUATION_STREAM))


def evaluation_permutation(num_examples: int, seed: int = EVALUATION_SEED) -> torch.Tensor:
    """A fixed permutation of ``range(num_examples)``: its first m entries are a uniformly random
    subset of m examples, in random order (PreciseBN's examples and batches; the doctor's
    sample)."""
    if num_examples < 0:
        raise NormlabError(f"num_examples must be >= 0, got {num_examples}")
    return torch.randperm(num_examples, generator=_generator(seed))


def evaluation_batches(
    num_examples: int,
    batch_size: int,
    sampler: str = "shuffle",
    labels: torch.Tensor | None = None,
    classes_per_batch: int | None = None,
    seed: int = EVALUATION_SEED,
) -> list[torch.Tensor]:
    """Index tensors covering every one of ``num_examples`` examples exactly once, in
    mini-batches of ``batch_size`` drawn as ``data.epoch_order`` draws training batches.

    - ``shuffle``: a seeded permutation cut into batches;
    - ``balanced``: the classes interleaved round-robin (class order and each class's examples
      shuffled), cut into batches: every batch balanced over the classes left;
    - ``classes_per_batch = k``: batches drawn as in training (the k classes with the most
      unused examples, random tie-break, ``q`` or ``q + 1`` of each); where the classes run
      short, a batch takes what those k classes have left, so the last batches may be smaller.
      ``k`` is capped by the classes present (an evaluation subset may hold fewer).

    Unlike a training epoch nothing is dropped: the last batch may be smaller, and a batch of
    one example joins the one before it (BatchNorm cannot normalize a single example without
    spatial positions). ``labels`` are needed by ``balanced`` and ``classes_per_batch``.
    """
    check_sampler(sampler)
    if isinstance(batch_size, bool) or batch_size < 1:
        raise NormlabError(f"batch_size must be >= 1, got {batch_size}")
    if num_examples < 1:
        return []
    generator = _generator(seed)
    needs_labels = classes_per_batch is not None or sampler == "balanced"
    if needs_labels and (labels is None or labels.shape != (num_examples,)):
        raise NormlabError(
            f"evaluation batches with sampler {sampler!r} and classes_per_batch="
            f"{classes_per_batch} need one label per example ({num_examples})"
        )
    if classes_per_batch is not None:
        if sampler != "shuffle":
            raise NormlabError(
                f"classes_per_batch works with sampler 'shuffle' only, not {sampler!r}"
            )
        batches = _covering_classes_per_batch(
            labels.cpu(),  # type: ignore[union-attr]
            batch_size,
            classes_per_batch,
            generator,
        )
        return _join_singletons(batches)
    if sampler == "balanced":
        stream = _round_robin(labels.cpu(), generator)  # type: ignore[union-attr]
    else:
        stream = torch.randperm(num_examples, generator=generator)
    return _join_singletons(list(torch.split(stream, batch_size)))


def _covering_classes_per_batch(
    labels: torch.Tensor, batch_size: int, k: object, generator: torch.Generator
) -> list[torch.Tensor]:
    """``order._classes_per_batch`` drawing until every example is used (module docstring)."""
    classes = torch.unique(labels)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise NormlabError(f"classes_per_batch must be a positive integer, got {k!r}")
    k = min(k, len(classes), batch_size)
    share, extra = divmod(batch_size, k)
    members = [torch.nonzero(labels == label).flatten() for label in classes]
    members = [m[torch.randperm(len(m), generator=generator)] for m in members]
    used = [0] * len(members)
    remaining = torch.tensor([len(m) for m in members], dtype=torch.float64)
    batches: list[torch.Tensor] = []
    while remaining.sum() > 0:
        scores = remaining + torch.rand(len(members), generator=generator, dtype=torch.float64)
        scores[remaining == 0] = -1.0  # an exhausted class is never chosen while others remain
        chosen = [c for c in torch.argsort(scores, descending=True)[:k].tolist() if remaining[c]]
        takes = [share + 1] * extra + [share] * (k - extra)
        parts = []
        for c, take in zip(chosen, takes, strict=False):
            count = min(take, int(remaining[c]))
            parts.append(members[c][used[c] : used[c] + count])
            used[c] += count
            remaining[c] -= count
        batches.append(torch.cat(parts))
    return batches


def _join_singletons(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """Batches with a batch of one example joined to its neighbour."""
    joined: list[torch.Tensor] = []
    for batch in batches:
        if joined and (len(batch) < 2 or len(joined[-1]) < 2):
            joined[-1] = torch.cat([joined[-1], batch])
        else:
            joined.append(batch)
    return joined
