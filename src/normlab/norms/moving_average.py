"""Moving Average Batch Normalization (Yan, Wan, Zhang, Zhang, Wei & Sun, ICLR 2020, "Towards
Stabilizing Batch Statistics in Backward Propagation of Batch Normalization").

BN's backward pass depends on two more batch statistics than its forward pass: with
``z = (x - mu_B) / sigma_B``, ``dL/dx = (g - mean_B(g) - z * mean_B(g * z)) / sigma_B`` where
``g = dL/dz``. At small batch all four (mu_B, sigma_B, g_B = mean_B(g), Psi_B = mean_B(g * z))
are noisy. MABN (paper Sec. 4, Algorithm 1; the authors' ``MABN2d``) keeps two of them and
replaces both by moving averages:

- Fewer statistics: no centring, so mu_B and g_B are gone; each channel is divided by the root of
  its quadratic mean ``chi_B = mean_B(x^2)`` (over the batch and spatial positions).
- Forward, simple moving average (SMAS) over the last ``window`` training steps t - s::

      chi_bar_t = (1 / window) * sum_{s < window} chi_{B, t-s}
      z = x / sqrt(chi_bar_t + eps)

- Renormalization with the exponential moving average (EMAS) ``chi_t`` of chi_bar (Batch Renorm's
  r, paper eq. 16), held fixed in the backward pass::

      r = clip(sqrt(chi_bar_t + eps) / sqrt(chi_{t-1} + eps), 1 / r_max, r_max)
      y = gamma * r * z + beta
      chi_t = chi_{t-1} + momentum * (chi_bar_t - chi_{t-1})

- Backward, the SMAS of ``Psi_{B, t} = mean_B(g * z)`` with ``g = dL/dy * gamma * r``::

      Psi_bar_t = (1 / window) * sum_{s < window} Psi_{B, t-s}
      dL/dx = (g - z * Psi_bar_t) / sqrt(chi_bar_t + eps)

- Inference: ``y = gamma * x / sqrt(chi + eps) + beta`` with the EMAS chi (``running_var``), a
  per-channel scale like BN's, so MABN adds nothing at inference.

Warm-up (authors' code): for the first ``max(window, warmup_steps)`` steps chi_bar and Psi_bar are
the current batch's chi_B and Psi_B (the window is not yet full), and r = 1 for the first
``max(renorm_steps, warmup_steps)`` steps. Defaults are the paper's ImageNet setting: a window of
16 iterations (normalization batch 2 simulating 32), EMA momentum 0.98 (0.02 here, PyTorch's
convention: the weight of the new value), warm-up 100 iterations, r fixed to 1 for 1000
iterations, then clipped to [1/5, 5].

Weight centralization: the paper pairs MABN with convolutions whose filters are centred (the
authors' ``CenConv2d``, each filter minus its mean), which keeps the mean MABN does not subtract
near 0. The registry entry says so (``centered_conv``), and normlab's model builders make every
convolution that feeds ``mabn`` a :class:`~normlab.norms.CenteredConv2d`. ``swap_norm(model,
"mabn")`` cannot find the convolutions feeding each norm in an arbitrary model and leaves them
as they are: MABN there runs on non-centred features (measured on the 32x32 ``shapes`` task
without centring: train accuracy 0.29 where BN reached 0.58).

Packing: every statistic and buffer is per channel (windows stored (C, window)), the step counter
is shared: ``channel``.
"""

from __future__ import annotations

import torch
from torch import nn

from .batch import check_batch_size
from .errors import NormlabError


class _MovingAverageFunction(torch.autograd.Function):
    """The MABN training transform with its moving-average backward (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer, use_window, renorm):  # noqa: ANN001, ANN205
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        slot = int(layer.step) % layer.window
        with torch.no_grad():
            square_mean = x.square().mean(dim=dims)
            layer.square_mean_window[:, slot] = square_mean.to(layer.square_mean_window.dtype)
            if use_window:
                square_mean = layer.square_mean_window.mean(dim=1).to(x.dtype)
            scale = torch.sqrt(square_mean + layer.eps)
            running = layer.running_var.to(x.dtype)
            if renorm:
                r = (scale / torch.sqrt(running + layer.eps)).clamp(1 / layer.r_max, layer.r_max)
            else:
                r = torch.ones_like(scale)
            layer.running_var.lerp_(square_mean.to(layer.running_var.dtype), layer.momentum)
        z = x / scale.view(shape)
        ctx.save_for_backward(z, scale, r, weight)
        ctx.layer, ctx.slot, ctx.use_window, ctx.dims, ctx.shape = (
            layer,
            slot,
            use_window,
            dims,
            shape,
        )
        return z * (weight * r).view(shape) + bias.view(shape)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: ANN001, ANN205
        z, scale, r, weight = ctx.saved_tensors
        layer, dims, shape = ctx.layer, ctx.dims, ctx.shape
        grad_z = grad_output * (weight * r).view(shape)
        psi = (grad_z * z).mean(dim=dims)
        # The backward statistic enters the window here: MABN's one side effect of backward.
        layer.grad_window[:, ctx.slot] = psi.to(layer.grad_window.dtype)
        if ctx.use_window:
            psi = layer.grad_window.mean(dim=1).to(z.dtype)
        grad_x = (grad_z - z * psi.view(shape)) / scale.view(shape)
        grad_weight = (grad_output * z * r.view(shape)).sum(dim=dims)
        grad_bias = grad_output.sum(dim=dims)
        return grad_x, grad_weight, grad_bias, None, None, None


class MovingAverageBatchNorm(nn.Module):
    """MABN: moving-average statistics in the forward and the backward pass (module docstring).

    Args:
        num_channels: C.
        window: iterations in the simple moving averages of chi_B and Psi_B (paper: 16).
        momentum: weight of chi_bar in the EMA ``running_var`` (paper: 0.02, i.e. 0.98 decay).
        warmup_steps: steps that use the current batch's statistics (paper: 100).
        renorm_steps: steps with r = 1 before clipping to [1/r_max, r_max] (paper: 1000).
        r_max: bound of the renormalization factor r (paper: 5).
        eps: added to chi.
    """

    def __init__(
        self,
        num_channels: int,
        window: int = 16,
        momentum: float = 0.02,
        warmup_steps: int = 100,
        renorm_steps: int = 1000,
        r_max: float = 5.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        for name, value in (
            ("window", window),
            ("warmup_steps", warmup_steps),
            ("renorm_steps", renorm_steps),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise NormlabError(f"mabn: {name} must be a non-negative integer, got {value!r}")
        if window < 1:
            raise NormlabError(f"mabn: window must be >= 1, got {window}")
        if not 0.0 <= momentum <= 1.0:
            raise NormlabError(f"mabn: momentum must be in [0, 1], got {momentum}")
        if not r_max >= 1.0:
            raise NormlabError(f"mabn: r_max must be >= 1, got {r_max}")
        self.num_features = num_channels
        self.window = window
        self.momentum = float(momentum)
        self.warmup_steps = warmup_steps
        self.renorm_steps = renorm_steps
        self.r_max = float(r_max)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        # (C, window): channel first, so that K runs stack along the channel axis.
        self.register_buffer("square_mean_window", torch.zeros(num_channels, window))
        self.register_buffer("grad_window", torch.zeros(num_channels, window))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise NormlabError(f"mabn expects (N, C, ...) input, got shape {tuple(x.shape)}")
        shape = [1, -1] + [1] * (x.dim() - 2)
        if not self.training:
            scale = torch.sqrt(self.running_var.to(x.dtype) + self.eps).view(shape)
            return x / scale * self.weight.view(shape) + self.bias.view(shape)
        check_batch_size(self, x)
        with torch.no_grad():
            self.step.add_(1)
        step = int(self.step)
        use_window = step > self.window and step >= self.warmup_steps
        renorm = step > max(self.renorm_steps, self.warmup_steps)
        return _MovingAverageFunction.apply(x, self.weight, self.bias, self, use_window, renorm)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, window={self.window}, momentum={self.momentum}, "
            f"warmup_steps={self.warmup_steps}, renorm_steps={self.renorm_steps}, "
            f"r_max={self.r_max}, eps={self.eps}"
        )


def moving_average_batch_norm(num_channels: int, **options: object) -> MovingAverageBatchNorm:
    """``mabn``: Moving Average BN with the paper's ImageNet defaults (window 16, EMA 0.98)."""
    return MovingAverageBatchNorm(num_channels, **options)
