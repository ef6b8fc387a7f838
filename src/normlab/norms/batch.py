"""Batch normalization (Ioffe & Szegedy 2015) in PyTorch and Keras flavours.

Training: ``y = gamma * (x - mu_B) / sqrt(sigma_B^2 + eps) + beta`` with mu_B, sigma_B^2 the mean
and biased variance over the batch and spatial positions of each channel. Inference uses the
running (exponential moving average) statistics ``r <- (1 - m) r + m s_B``.

The two flavours differ only in constants and in the variance fed to the running estimate:
PyTorch updates ``running_var`` with the *unbiased* batch variance (divide by n - 1), Keras's
``moving_variance`` with the *biased* one (divide by n). ``bn_keras`` follows Keras so that the
same weights give the same statistics as the write-up's Keras model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import NormlabError


def check_batch_size(module: nn.Module, x: torch.Tensor) -> None:
    """Refuse a training-mode batch of one sample for a batch-statistics norm.

    With one sample per batch the "batch" statistics are the sample's own, so the layer stops
    being batch normalization (and with 1x1 spatial size PyTorch fails with an internal message).
    """
    if module.training and x.shape[0] == 1:
        raise NormlabError(
            f"{type(module).__name__} computes batch statistics and cannot train on a batch of "
            "one sample; use batch size >= 2 or a per-sample norm (ln, gn, in, none)"
        )


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalization for inputs (N, C, *spatial) of any rank.

    Args:
        num_channels: C.
        momentum: PyTorch convention, weight of the new batch statistic in the running average
            (Keras ``momentum=0.99`` is ``momentum=0.01`` here).
        eps: added to the variance.
        affine: learn gamma and beta.
        biased_running_var: update ``running_var`` with the biased batch variance (Keras) instead
            of the unbiased one (PyTorch).
    """

    def __init__(
        self,
        num_channels: int,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
        biased_running_var: bool = False,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise NormlabError(f"bn: momentum must be in [0, 1], got {momentum}")
        super().__init__(num_channels, eps=eps, momentum=momentum, affine=affine)
        self.biased_running_var = biased_running_var

    def _check_input_dim(self, x: torch.Tensor) -> None:
        # Plain string concatenation: TorchScript compiles this method for frozen_bn, and it
        # cannot infer the size of tuple(x.shape) (torch.jit.script(freeze_bn(model)) works).
        if x.dim() < 2:
            raise NormlabError(
                "BatchNorm expects (N, C, ...) input, got shape " + str(list(x.shape))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_size(self, x)
        if not (self.training and self.biased_running_var):
            return super().forward(x)
        # Keras flavour: batch statistics for the output, biased variance for the running one.
        dims = [0, *range(2, x.dim())]
        with torch.no_grad():
            variance, mean = torch.var_mean(x, dim=dims, correction=0)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(variance, self.momentum)
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", biased_running_var={self.biased_running_var}"


def batch_norm(num_channels: int, **options: object) -> BatchNorm:
    """``bn``: PyTorch defaults (momentum 0.1, eps 1e-5, unbiased running variance)."""
    return BatchNorm(num_channels, **options)


def batch_norm_keras(num_channels: int, momentum: float = 0.01, eps: float = 1e-3, **options):
    """``bn_keras``: Keras ``BatchNormalization()`` (momentum 0.99 = 0.01 here, eps 1e-3, biased)."""
    options.setdefault("biased_running_var", True)
    return BatchNorm(num_channels, momentum=momentum, eps=eps, **options)
