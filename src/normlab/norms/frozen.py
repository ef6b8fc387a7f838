"""Frozen batch normalization: BN that always normalizes with its running statistics.

``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta`` in training *and* inference;
the running statistics are never updated. This is BN's inference transform (Ioffe & Szegedy
2015, Sec. 3.1) used during training too, as detectron2's and torchvision's
``FrozenBatchNorm2d`` do for fine-tuning with batches too small for batch statistics. Whether
gamma and beta still learn is the caller's choice (``surgery.freeze_bn(freeze_affine=...)``).

It is a ``torch.nn.modules.batchnorm._BatchNorm`` so that ``swap_norm`` and code that looks for
BN layers find it, but its output does not depend on the rest of the mini-batch. It compiles
with ``torch.jit.script`` (the input check it inherits is written for TorchScript).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import BatchNorm


class FrozenBatchNorm(BatchNorm):
    """BatchNorm whose running statistics are fixed and used in training and inference alike."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        # momentum 0: nothing in this layer ever moves the running statistics.
        super().__init__(num_channels, momentum=0.0, eps=eps, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}, frozen statistics"


def frozen_batch_norm(num_channels: int, **options: object) -> FrozenBatchNorm:
    """``frozen_bn``: BN with fixed running statistics (mean 0, variance 1 until loaded)."""
    return FrozenBatchNorm(num_channels, **options)
