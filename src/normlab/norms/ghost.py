"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better").

Training: the mini-batch of N samples is split into k virtual ("ghost") batches and each is
normalized by its own statistics,
``y = gamma * (x - mu_v) / sqrt(sigma_v^2 + eps) + beta`` for the samples of virtual batch v,
with mu_v, sigma_v^2 the mean and biased variance over that virtual batch and all spatial
positions of each channel. Every virtual batch is one BN update of the running statistics,
applied in order (the paper's Algorithm 1): ``r <- (1 - m) r + m s_v``, with PyTorch's unbiased
variance in ``running_var``. Inference uses the running statistics, exactly as BN.

Splitting (our choice, the paper assumes N divisible by the virtual size V): k = max(1, N // V)
virtual batches of near-equal size (they differ by at most one sample). Every virtual batch then
has at least V samples and fewer than 2V, so a virtual batch never degenerates to one sample; a
batch smaller than V is one virtual batch, which makes the layer plain BN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batch import BatchNorm, check_batch_size
from .errors import NormlabError


class GhostBatchNorm(BatchNorm):
    """Batch normalization over virtual batches of ``virtual_batch_size`` samples (training only).

    Args:
        num_channels: C.
        virtual_batch_size: V, the number of samples each training-time statistic is computed
            over (see the module docstring for batches not divisible by V).
        momentum: weight of each virtual batch's statistic in the running average.
        eps: added to the variance.
        affine: learn gamma and beta.
    """

    def __init__(
        self,
        num_channels: int,
        virtual_batch_size: int = 16,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        if isinstance(virtual_batch_size, bool) or not isinstance(virtual_batch_size, int):
            raise NormlabError(
                f"gbn: virtual_batch_size must be an integer, got {virtual_batch_size!r}"
            )
        if virtual_batch_size < 2:
            raise NormlabError(
                f"gbn: virtual_batch_size must be >= 2 (one sample has no batch statistics), "
                f"got {virtual_batch_size}"
            )
        super().__init__(num_channels, momentum=momentum, eps=eps, affine=affine)
        self.virtual_batch_size = virtual_batch_size

    def num_virtual_batches(self, batch_size: int) -> int:
        """How many virtual batches a training batch of ``batch_size`` samples is split into."""
        return max(1, batch_size // self.virtual_batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_size(self, x)
        count = self.num_virtual_batches(x.shape[0])
        if not self.training or count == 1:
            return super().forward(x)
        self._check_input_dim(x)
        # F.batch_norm in training mode updates the running buffers in place: one update per
        # virtual batch, in order, as in the paper.
        outputs = [
            F.batch_norm(
                chunk,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                True,
                self.momentum,
                self.eps,
            )
            for chunk in x.tensor_split(count, dim=0)
        ]
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(count)
        return torch.cat(outputs, dim=0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", virtual_batch_size={self.virtual_batch_size}"


def ghost_batch_norm(num_channels: int, **options: object) -> GhostBatchNorm:
    """``gbn``: Ghost BatchNorm, virtual batches of 16 samples by default."""
    return GhostBatchNorm(num_channels, **options)
