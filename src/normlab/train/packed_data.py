"""The mini-batches of a pack: each run's own data order and augmentation, K runs at a time.

Run k of a pack sees exactly the batches ``engine.train_run`` feeds it alone: the rows of its
own ``epoch_order`` (``classes_per_batch`` included), epoch after epoch, each batch augmented by
``augment_batch(x, seed_k, step)`` when the runs augment. Epochs of the runs of a pack may have
different lengths (``classes_per_batch`` draws as many batches as the classes allow, which
depends on the seed), so :class:`RunStreams` serves *chunks* of steps during which no run's
epoch ends: with the ``shuffle`` and ``balanced`` samplers a chunk is a whole epoch, so the
images of an epoch are gathered (and augmented) in one indexing operation, not one per step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from normlab.data import epoch_order
from normlab.data.augment import PADDING, augment_parameters

from .config import RunConfig


class RunStreams:
    """Each run's sequence of mini-batches (indices into the training set), epoch after epoch."""

    def __init__(self, configs: Sequence[RunConfig], labels: torch.Tensor) -> None:
        self.configs = list(configs)
        self.labels = labels.cpu()
        self.epochs = [-1] * len(configs)
        """The epoch each run is in (its own count, as ``train_run`` numbers its records)."""
        self.orders: list[torch.Tensor] = [torch.empty(0)] * len(configs)
        self.positions = [0] * len(configs)
        for k in range(len(configs)):
            self._next_epoch(k)

    def _next_epoch(self, k: int) -> None:
        config = self.configs[k]
        self.epochs[k] += 1
        self.positions[k] = 0
        self.orders[k] = epoch_order(
            config.seed,
            self.epochs[k],
            len(self.labels),
            config.batch_size,
            config.sampler,
            labels=self.labels,
            classes_per_batch=config.classes_per_batch,
        )

    def take(self, limit: int) -> torch.Tensor:
        """Indices (steps, K, N) of the next steps, at most ``limit``, up to the first step
        after which some run's epoch ends."""
        steps = min(limit, *(len(o) - p for o, p in zip(self.orders, self.positions, strict=True)))
        index = torch.stack(
            [o[p : p + steps] for o, p in zip(self.orders, self.positions, strict=True)], dim=1
        )
        self.positions = [p + steps for p in self.positions]
        return index

    def ended(self) -> list[bool]:
        """Which runs have just taken the last batch of their epoch."""
        return [p == len(o) for o, p in zip(self.orders, self.positions, strict=True)]

    def advance(self) -> None:
        """Start the next epoch of every run whose epoch has ended."""
        for k, done in enumerate(self.ended()):
            if done:
                self._next_epoch(k)


def packed_batches(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    index: torch.Tensor,
    configs: Sequence[RunConfig],
    first_step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The packed inputs of the steps ``index`` (steps, K, N) starting at ``first_step``:
    x (steps, N, K*C, H, W) with run k's batch in channels ``[k*C, (k+1)*C)``, y (steps, K, N).

    One gather for all the steps; with ``augment``, one crop-and-flip gather over all their
    images with each (run, step)'s own parameters (``augment_parameters(N, seed_k, step)``).
    """
    index = index.to(x_train.device)
    steps, count, batch_size = index.shape
    x = x_train[index]  # (steps, K, N, C, H, W)
    if configs[0].augment:
        drawn = [
            augment_parameters(batch_size, config.seed, first_step + s)
            for s in range(steps)
            for config in configs
        ]
        offsets = torch.cat([offsets for offsets, _ in drawn]).to(x.device)
        flips = torch.cat([flips for _, flips in drawn]).to(x.device)
        x = crop_and_flip(x.reshape(-1, *x.shape[3:]), offsets, flips).view(x.shape)
    x = x.permute(0, 2, 1, 3, 4, 5).reshape(steps, batch_size, -1, *x.shape[4:])
    return x, y_train[index]


def crop_and_flip(
    x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, padding: int = PADDING
) -> torch.Tensor:
    """``augment_batch`` with given parameters: image b of ``x`` (B, C, H, W) zero-padded by
    ``padding``, cropped at ``offsets[b]`` (row, column) and flipped where ``flips[b]``."""
    batch, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    rows = offsets[:, :1] + torch.arange(height, device=x.device)
    columns = torch.arange(width, device=x.device).expand(batch, width)
    columns = torch.where(flips[:, None], columns.flip(1), columns) + offsets[:, 1:]
    index = rows[:, :, None] * padded_width + columns[:, None, :]
    index = index.view(batch, 1, height * width).expand(batch, channels, height * width)
    return padded.reshape(batch, channels, -1).gather(2, index).view(x.shape)
