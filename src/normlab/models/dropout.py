"""Dropout whose masks come from the run's own random stream, not from torch's global one.

Srivastava et al. 2014: in training each element is kept with probability ``1 - p`` and scaled
by ``1 / (1 - p)`` (inverted dropout, as ``nn.Dropout``); in evaluation the layer is the
identity. The masks are drawn from a ``torch.Generator`` the run owns (:func:`seed_dropout`), in
the order the layers run, so the masks of a run depend on its seed and on nothing else: a packed
engine training K runs as one model draws each run's masks from that run's generator and gets
exactly the masks the run draws alone (the global stream after an initialization cannot be
reproduced per run).
"""

from __future__ import annotations

import torch
from torch import nn

DROPOUT_SEED_OFFSET = 0xD509
"""Mixed into the run's seed so that the dropout stream differs from the data-order stream."""


def dropout_generator(seed: int) -> torch.Generator:
    """The random stream a run seeded ``seed`` draws its dropout masks from."""
    return torch.Generator().manual_seed((seed * 1_000_033 + DROPOUT_SEED_OFFSET) % (2**63 - 1))


def keep_mask(
    shape: torch.Size, p: float, generator: torch.Generator | None, dtype: torch.dtype
) -> torch.Tensor:
    """Inverted-dropout multiplier: ``1 / (1 - p)`` where ``U(0, 1) >= p`` (kept), else 0."""
    uniform = torch.rand(shape, generator=generator)
    return (uniform >= p).to(dtype) / (1.0 - p)


class SeededDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks from ``generator`` (the global stream while None).

    Still an ``nn.Dropout`` so that code which switches dropout off by type (the batch-statistics
    evaluation view) finds it.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # Drawn on the CPU (the run's own stream on any device), then moved to x's device.
        return x * keep_mask(x.shape, self.p, self.generator, x.dtype).to(x.device)


def seed_dropout(model: nn.Module, seed: int) -> torch.Generator:
    """Give every :class:`SeededDropout` of ``model`` one shared generator seeded from ``seed``."""
    generator = dropout_generator(seed)
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.generator = generator
    return generator
