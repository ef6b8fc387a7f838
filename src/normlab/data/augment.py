"""Standard CIFAR augmentation on tensors, seeded per run and step.

Random crop with 4-pixel zero padding and a random horizontal flip, each with probability 1/2
(He et al., 2016, "Deep Residual Learning for Image Recognition", sec. 4.2, after Lee et al.,
2015). Images are already standardized, so padding with zero pads with the training mean.

The draws come from a ``torch.Generator`` seeded from ``(seed, step)`` only: a run's images
depend on its seed and step and on nothing else (not on global random state, not on the other
runs a packed engine trains beside it, not on the device). The crop is one gather over index
tensors: no per-image Python loop.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from normlab.errors import NormlabError

PADDING = 4
_STREAM = 0xA0_6E17
"""Tags the augmentation stream so that it never coincides with the data-order stream."""


def augment_parameters(
    batch_size: int, seed: int, step: int, padding: int = PADDING
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop offsets (B, 2) as (row, column) in ``0..2 * padding`` and flips (B,) of one step."""
    state = np.random.SeedSequence([seed, step, _STREAM]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state))
    offsets = torch.randint(0, 2 * padding + 1, (batch_size, 2), generator=generator)
    flips = torch.randint(0, 2, (batch_size,), generator=generator).bool()
    return offsets, flips


def augment_batch(x: torch.Tensor, seed: int, step: int, padding: int = PADDING) -> torch.Tensor:
    """Randomly cropped (``padding`` zero pixels each side) and flipped copy of ``x`` (B, C, H, W).

    Output pixel (b, c, i, j) is ``padded[b, c, i + row_b, j' ]`` with ``j' = j + column_b`` or,
    when image b is flipped, ``j' = W - 1 - j + column_b``; ``(row_b, column_b)`` and the flips
    come from :func:`augment_parameters`. Works for any H and W.
    """
    if x.ndim != 4:
        raise NormlabError(f"augment_batch: expected (B, C, H, W), got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    offsets, flips = augment_parameters(batch, seed, step, padding)
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    rows = offsets[:, :1] + torch.arange(height, device=x.device)  # (B, H)
    columns = torch.arange(width, device=x.device).expand(batch, width)
    columns = torch.where(flips[:, None], columns.flip(1), columns) + offsets[:, 1:]  # (B, W)
    # One gather over the flattened padded planes: the linear index of every output pixel,
    # shared by the channels of an image (4x faster than advanced indexing at batch 128).
    index = rows[:, :, None] * padded_width + columns[:, None, :]  # (B, H, W)
    index = index.view(batch, 1, height * width).expand(batch, channels, height * width)
    cropped = padded.reshape(batch, channels, -1).gather(2, index)
    return cropped.view(batch, channels, height, width)
