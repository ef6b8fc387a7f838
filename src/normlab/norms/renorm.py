"""Batch Renormalization (Ioffe 2017, "Batch Renormalization: Towards Reducing Minibatch
Dependence in Batch-Normalized Models"), Algorithm 1.

Training, per channel, with mu_B and sigma_B = sqrt(var_B + eps) the batch mean and (biased)
standard deviation over the batch and spatial positions, mu and sigma the running ones::

    r = stop_gradient(clip(sigma_B / sigma, 1 / r_max, r_max))
    d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
    y = gamma * ((x - mu_B) / sigma_B * r + d) + beta
    mu    <- mu    + momentum * (mu_B - mu)
    sigma <- sigma + momentum * (sigma_B - sigma)

Inference: ``y = gamma * (x - mu) / sigma + beta``, i.e. BN with the running statistics. The paper
averages the standard deviation, not the variance; the layer keeps BN's ``running_var`` buffer
with ``sigma = sqrt(running_var + eps)`` so that BN's inference path, ``swap_norm`` and
``recalibrate_bn`` work unchanged.

With r and d unclipped, the training output is exactly ``(x - mu) / sigma``: normalization by
the running statistics. So PreciseBN's pass (``recalibrate_bn``), which replaces mu and sigma
and must normalize by batch statistics, turns the corrections off (:func:`set_renormalization`);
otherwise every layer's recalibrated statistics are measured under its predecessors' old ones
(``benchmarks/brn_precise_bn.py`` measures both). Evaluation with batch statistics keeps them:
it is the forward the network trained with.

Schedule (paper, Sec. 4): r_max = 1 and d_max = 0 (plain BN) for the first ``warmup_steps``
training steps, then relaxed linearly to ``r_max`` over ``relax_steps`` and to ``d_max`` over
``d_relax_steps`` steps (paper: warm-up 5k steps, r_max = 3 reached at 40k, d_max = 5 at 25k;
these are the defaults, so shorter runs should pass smaller values). A step is one training-mode
forward call, counted in the ``step`` buffer (saved with the state dict). ``momentum`` defaults to
PyTorch BN's 0.1 so that ``brn`` and ``bn`` differ only by the method.
"""

from __future__ import annotations

import torch
from torch import nn

from .batch import BatchNorm, check_batch_size
from .errors import NormlabError


def _check_steps(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NormlabError(f"brn: {name} must be a non-negative integer, got {value!r}")
    return value


class BatchRenorm(BatchNorm):
    """Batch Renormalization with the paper's warm-up and linear relaxation of r_max, d_max.

    Args:
        num_channels: C.
        r_max: final bound of the scale correction r (>= 1).
        d_max: final bound of the shift correction d (>= 0).
        warmup_steps: training steps with r_max = 1, d_max = 0.
        relax_steps: steps after warm-up over which r's bound grows linearly to ``r_max``.
        d_relax_steps: steps after warm-up over which d's bound grows linearly to ``d_max``.
        momentum: update rate of the running mean and standard deviation.
        eps: added to the variances.
        affine: learn gamma and beta.
    """

    def __init__(
        self,
        num_channels: int,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5_000,
        relax_steps: int = 35_000,
        d_relax_steps: int = 20_000,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        if not r_max >= 1.0:
            raise NormlabError(f"brn: r_max must be >= 1, got {r_max}")
        if not d_max >= 0.0:
            raise NormlabError(f"brn: d_max must be >= 0, got {d_max}")
        super().__init__(num_channels, momentum=momentum, eps=eps, affine=affine)
        self.r_max = float(r_max)
        self.d_max = float(d_max)
        self.warmup_steps = _check_steps("warmup_steps", warmup_steps)
        self.relax_steps = _check_steps("relax_steps", relax_steps)
        self.d_relax_steps = _check_steps("d_relax_steps", d_relax_steps)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.renormalize = True
        """Apply r and d in training mode; False normalizes by batch statistics alone (plain
        BN's training output), for passes that stand in for batch statistics."""

    def clip_bounds(self, step: int | None = None) -> tuple[float, float]:
        """The (r_max, d_max) in force at ``step`` (default: the current step)."""
        step = int(self.step) if step is None else step
        elapsed = step - self.warmup_steps
        if elapsed < 0:
            return 1.0, 0.0
        r_fraction = min(1.0, elapsed / self.relax_steps) if self.relax_steps else 1.0
        d_fraction = min(1.0, elapsed / self.d_relax_steps) if self.d_relax_steps else 1.0
        return 1.0 + (self.r_max - 1.0) * r_fraction, self.d_max * d_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_size(self, x)
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        variance, mean = torch.var_mean(x, dim=dims, correction=0)
        batch_std = torch.sqrt(variance + self.eps)
        r_bound, d_bound = self.clip_bounds() if self.renormalize else (1.0, 0.0)
        with torch.no_grad():
            running_mean = self.running_mean.to(x.dtype)
            running_std = torch.sqrt(self.running_var.to(x.dtype) + self.eps)
            r = (batch_std / running_std).clamp(1.0 / r_bound, r_bound)
            d = ((mean - running_mean) / running_std).clamp(-d_bound, d_bound)
        out = (x - mean.view(shape)) / batch_std.view(shape) * r.view(shape) + d.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            buffer_dtype = self.running_mean.dtype
            self.running_mean.lerp_(mean.to(buffer_dtype), self.momentum)
            new_std = running_std.lerp(batch_std, self.momentum).to(buffer_dtype)
            # sigma = sqrt(running_var + eps); clamp guards rounding when sigma^2 ~ eps.
            self.running_var.copy_((new_std.square() - self.eps).clamp_min(0.0))
            self.num_batches_tracked.add_(1)
            self.step.add_(1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, r_max={self.r_max}, "
            f"d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
            f"relax_steps={self.relax_steps}, d_relax_steps={self.d_relax_steps}"
            + ("" if self.renormalize else ", renormalize=False")
        )


def set_renormalization(model: nn.Module, enabled: bool) -> dict[BatchRenorm, bool]:
    """Turn the r, d corrections of every :class:`BatchRenorm` in ``model`` on or off (see the
    module docstring); returns each layer's previous setting, to restore."""
    previous = {}
    for layer in model.modules():
        if isinstance(layer, BatchRenorm):
            previous[layer] = layer.renormalize
            layer.renormalize = enabled
    return previous


def batch_renorm(num_channels: int, **options: object) -> BatchRenorm:
    """``brn``: Batch Renormalization (r_max 3, d_max 5, the paper's schedule)."""
    return BatchRenorm(num_channels, **options)
