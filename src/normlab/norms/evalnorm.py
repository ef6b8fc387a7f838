"""EvalNorm (Singh & Shrivastava, ICCV 2019, "EvalNorm: Estimating Batch Normalization Statistics
for Evaluation").

Training is BN, unchanged. The paper's observation: in training, each sample is normalized by
batch statistics *it contributes to* (weight 1/B in a batch of B), while BN's evaluation uses
population statistics that do not depend on the sample; at small B that mismatch is large.
EvalNorm corrects only the evaluation: each sample is normalized by statistics that mix its own
per-channel statistics (mu_x, sigma_x^2 over its spatial positions) with the population ones
(mu, sigma^2: ``running_mean``, ``running_var``), the moments of the mixture that gives the
sample weight alpha::

    mu_hat     = alpha * mu_x + (1 - alpha) * mu
    sigma2_hat = alpha * sigma_x^2 + (1 - alpha) * sigma^2 + alpha * (1 - alpha) * (mu_x - mu)^2
    y          = gamma * (x - mu_hat) / sqrt(sigma2_hat + eps) + beta

alpha = 0 is BN's evaluation. Default: alpha = 1 / B, with B the training batch size: a
sample's weight in the batch statistics that normalized it in training, which is how normlab
reads the paper's simple (rule-of-thumb) approximation; the exact form of that rule was not
re-checked against the paper's text, and ``alpha=`` sets any other value. B is what the layer
records in training (``train_batch_size``) or the ``batch_size`` option (a model trained
elsewhere, e.g. after ``swap_norm``); an explicit ``alpha`` overrides both; with neither, alpha =
0. The paper also estimates alpha (for the mean and the variance separately) with learnable
variables trained online; that variant is not implemented here.

Packing: the statistics are per channel (per sample and channel at evaluation): ``channel``.
"""

from __future__ import annotations

import torch

from .batch import BatchNorm, check_batch_size
from .errors import NormlabError


class EvalNorm(BatchNorm):
    """BN in training; at evaluation, statistics mixed from the sample's and the population's.

    Args:
        num_channels: C.
        alpha: the sample's weight in the evaluation statistics (default: 1 / B).
        batch_size: B for the rule of thumb when the layer has not been trained here.
        momentum: weight of the new batch statistic in the running averages (PyTorch's 0.1).
        eps: added to the variances.
        affine: learn gamma and beta.
    """

    def __init__(
        self,
        num_channels: int,
        alpha: float | None = None,
        batch_size: int | None = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise NormlabError(f"evalnorm: alpha must be in [0, 1], got {alpha}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise NormlabError(
                f"evalnorm: batch_size must be a positive integer, got {batch_size!r}"
            )
        super().__init__(num_channels, momentum=momentum, eps=eps, affine=affine)
        self.alpha = alpha
        self.batch_size = batch_size
        self.register_buffer("train_batch_size", torch.zeros((), dtype=torch.long))

    def sample_weight(self) -> float:
        """alpha in force: the option, else 1 / ``batch_size``, else 1 / the trained batch size,
        else 0 (a layer never trained here, with no ``batch_size``: BN's evaluation)."""
        if self.alpha is not None:
            return self.alpha
        batch_size = self.batch_size or int(self.train_batch_size)
        if batch_size < 1:  # never trained here and no batch_size given: BN's evaluation
            return 0.0
        return 1.0 / batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_size(self, x)
        if self.training:
            with torch.no_grad():
                self.train_batch_size.fill_(x.shape[0])
            return super().forward(x)
        self._check_input_dim(x)
        alpha = self.sample_weight()
        shape = [1, -1] + [1] * (x.dim() - 2)
        mean = self.running_mean.to(x.dtype).view(shape)
        variance = self.running_var.to(x.dtype).view(shape)
        if x.dim() > 2:
            spatial = list(range(2, x.dim()))
            sample_variance, sample_mean = torch.var_mean(
                x, dim=spatial, correction=0, keepdim=True
            )
        else:  # one value per sample and channel: its own mean, no spread
            sample_mean, sample_variance = x, torch.zeros_like(x)
        mixed_mean = torch.lerp(mean, sample_mean, alpha)
        mixed_variance = (
            torch.lerp(variance, sample_variance, alpha)
            + alpha * (1.0 - alpha) * (sample_mean - mean).square()
        )
        out = (x - mixed_mean) * torch.rsqrt(mixed_variance + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={self.alpha}, batch_size={self.batch_size}"


def eval_norm(num_channels: int, **options: object) -> EvalNorm:
    """``evalnorm``: BN with EvalNorm's corrected evaluation statistics (alpha = 1 / B)."""
    return EvalNorm(num_channels, **options)
