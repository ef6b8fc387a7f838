"""Cross-Iteration Batch Normalization (Yao, Cao, Zheng, Huang & Lin, CVPR 2021).

At small batch, BN's statistics are estimated from too few examples. CBN pools the statistics of
the last k iterations, which were computed under older weights theta_{t-tau}; it compensates for
the weight change with a first-order Taylor expansion in the weights of the layer that produced
the input (the preceding convolution, paper Sec. 3.2, eqs. 6-7)::

    mu_{t-tau}(theta_t) ~ mu_{t-tau}(theta_{t-tau})
                          + d mu_{t-tau} / d theta_{t-tau} . (theta_t - theta_{t-tau})
    nu_{t-tau}(theta_t) ~ nu_{t-tau}(theta_{t-tau})
                          + d nu_{t-tau} / d theta_{t-tau} . (theta_t - theta_{t-tau})

with mu = E[x] and nu = E[x^2] per channel over the batch and positions, and theta the weight
(and bias) rows of that convolution that produce the channel. The window statistics (eqs. 8-9)::

    mu_bar     = (1/n) sum_{tau < n} mu_{t-tau}(theta_t)
    sigma2_bar = (1/n) sum_{tau < n} max(nu_{t-tau}(theta_t), mu_{t-tau}(theta_t)^2) - mu_bar^2
    y          = gamma * (x - mu_bar) / sqrt(sigma2_bar + eps) + beta

n = min(k, iterations since burn-in). Only the current iteration's statistics carry gradients; the
stored ones and the compensation are constants (as in the paper and the authors' code). The
derivatives d mu / d theta are taken by autograd at the iteration they belong to and stored.

How the layer finds theta: it reads it from the autograd graph of its input. When the input is
the direct output of a convolution whose weight is a leaf parameter (``ConvolutionBackward`` with
the weight's gradient accumulator as input), theta is that weight (and bias). This needs no
builder hook and works in any model, after ``swap_norm`` and in packed models. When the input
does not come straight from such a convolution (a residual sum, a weight-standardized
convolution), there is nothing to expand in and the layer pools the uncompensated statistics.

Burn-in (paper): BN for the first ``burnin_steps`` training steps, while the weights change fast.
Defaults: k = 8 (``window``, counting the current iteration), rho = 1 (the scale of the Taylor
term, the authors' code), burn-in 1000 steps (the paper gives its burn-in in epochs of ImageNet
training; 1000 steps is our choice for short runs), momentum 0.1 for the running statistics,
which track the current batch's mean and unbiased variance exactly as BN's do (authors' code):
inference is BN's.

``compensate=False`` is the "naive" baseline the paper compares against: the same window without
the Taylor term (registered as ``cbn_naive``).

Training steps without gradients (no_grad, or an input that needs none, e.g. PreciseBN's
recalibration pass) normalize with the current batch, as BN, and leave the window unchanged.
The window is transient state, as in the authors' code (Python lists there): it is not saved with
the state dict, and moving the layer to another device or dtype restarts it. The ``step`` counter
is a buffer.

Packing: statistics and stored rows are per channel; the window of a packed layer belongs to the
packed layer (it is never split): ``channel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .batch import BatchNorm, check_batch_size
from .errors import NormlabError


@dataclass
class _History:
    """The last k - 1 iterations' statistics, newest first: (C, k - 1) and (C, k - 1, P)."""

    mean: torch.Tensor
    square_mean: torch.Tensor
    filled: int = 0
    theta: torch.Tensor | None = None
    mean_grad: torch.Tensor | None = None
    square_mean_grad: torch.Tensor | None = None


def preceding_parameters(x: torch.Tensor, num_channels: int) -> list[torch.Tensor] | None:
    """The weight (and bias) of the convolution whose output ``x`` is, read from the autograd
    graph; None when ``x`` is not the direct output of a convolution with leaf parameters whose
    rows are ``x``'s ``num_channels`` channels."""
    node = x.grad_fn
    if node is None or not type(node).__name__.startswith("ConvolutionBackward"):
        return None
    parameters = []
    for next_node, _ in node.next_functions[1:]:
        if next_node is None:
            continue
        variable = getattr(next_node, "variable", None)
        if variable is None:  # a computed weight (weight standardization): no leaf to expand in
            return None
        parameters.append(variable)
    if not parameters or parameters[0].shape[0] != num_channels:
        return None
    return parameters


def _per_channel(tensors: list[torch.Tensor], num_channels: int) -> torch.Tensor:
    """Concatenate each tensor's rows into one (C, P) matrix: channel c's weight row and bias."""
    return torch.cat([tensor.reshape(num_channels, -1) for tensor in tensors], dim=1)


def _push(history: torch.Tensor, newest: torch.Tensor) -> torch.Tensor:
    return torch.cat([newest.unsqueeze(1), history[:, :-1]], dim=1)


class CrossIterationBatchNorm(BatchNorm):
    """CBN: BN statistics pooled over the last ``window`` iterations (module docstring).

    Args:
        num_channels: C.
        window: k, iterations pooled, the current one included (paper: 8).
        burnin_steps: training steps of plain BN before pooling starts.
        compensate: apply the Taylor compensation (False: the naive window, ``cbn_naive``).
        rho: scale of the Taylor term (authors' code: 1).
        momentum: weight of the new batch statistic in the running averages (PyTorch's 0.1).
        eps: added to the variance.
        affine: learn gamma and beta.
    """

    def __init__(
        self,
        num_channels: int,
        window: int = 8,
        burnin_steps: int = 1000,
        compensate: bool = True,
        rho: float = 1.0,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ) -> None:
        for name, value, least in (("window", window, 1), ("burnin_steps", burnin_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise NormlabError(f"cbn: {name} must be an integer >= {least}, got {value!r}")
        super().__init__(num_channels, momentum=momentum, eps=eps, affine=affine)
        self.window = window
        self.burnin_steps = burnin_steps
        self.compensate = bool(compensate)
        self.rho = float(rho)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._history: _History | None = None
        self.compensated = False
        """Whether the last pooled step applied the Taylor compensation."""

    def reset_history(self) -> None:
        """Forget the stored iterations (the next steps refill the window)."""
        self._history = None

    def _history_for(self, like: torch.Tensor, width: int | None) -> _History:
        history = self._history
        channels, size = like.shape[0], self.window - 1
        stale = (
            history is None
            or history.mean.shape != (channels, size)
            or history.mean.device != like.device
            or history.mean.dtype != like.dtype
            or (history.theta is None) != (width is None)
            or (width is not None and history.theta.shape[2] != width)
        )
        if stale:
            zeros = like.new_zeros(channels, size)
            history = _History(zeros, zeros.clone())
            if width is not None:
                rows = like.new_zeros(channels, size, width)
                history.theta, history.mean_grad, history.square_mean_grad = (
                    rows,
                    rows.clone(),
                    rows.clone(),
                )
            self._history = history
        return history

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch_size(self, x)
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        with torch.no_grad():
            self.step.add_(1)
        pooled = self.window > 1 and int(self.step) > self.burnin_steps
        if not (pooled and torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        mean = x.mean(dim=dims)
        square_mean = x.square().mean(dim=dims)
        parameters = preceding_parameters(x, channels) if self.compensate else None
        theta = mean_grad = square_mean_grad = None
        if parameters is not None:
            # Rows of d(sum_c mu_c)/d theta are d mu_c / d theta_c: channel c depends on row c only.
            mean_grad = _per_channel(
                list(torch.autograd.grad(mean.sum(), parameters, retain_graph=True)), channels
            )
            square_mean_grad = _per_channel(
                list(torch.autograd.grad(square_mean.sum(), parameters, retain_graph=True)),
                channels,
            )
            theta = _per_channel([p.detach() for p in parameters], channels).to(x.dtype)
        history = self._history_for(mean, None if theta is None else theta.shape[1])
        past_mean, past_square = history.mean, history.square_mean
        if theta is not None:
            change = theta.unsqueeze(1) - history.theta
            past_mean = past_mean + self.rho * (history.mean_grad * change).sum(dim=2)
            past_square = past_square + self.rho * (history.square_mean_grad * change).sum(dim=2)
        filled = history.filled
        # Eq. 9: max(nu, mu^2) keeps each compensated variance non-negative.
        past_square = torch.maximum(past_square, past_mean.square())[:, :filled]
        means = torch.cat([mean.unsqueeze(1), past_mean[:, :filled]], dim=1)
        squares = torch.cat([square_mean.unsqueeze(1), past_square], dim=1)
        window_mean = means.mean(dim=1)
        window_variance = squares.mean(dim=1) - window_mean.square()
        out = (x - window_mean.view(shape)) * torch.rsqrt(window_variance.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        with torch.no_grad():
            self._update_running(mean, square_mean, x.numel() // channels)
            history.mean = _push(history.mean, mean.detach())
            history.square_mean = _push(history.square_mean, square_mean.detach())
            if theta is not None:
                history.theta = _push(history.theta, theta)
                history.mean_grad = _push(history.mean_grad, mean_grad)
                history.square_mean_grad = _push(history.square_mean_grad, square_mean_grad)
            history.filled = min(filled + 1, self.window - 1)
        self.compensated = theta is not None
        return out

    def _update_running(self, mean: torch.Tensor, square_mean: torch.Tensor, count: int) -> None:
        """BN's update with the current batch: mean and unbiased variance (n / (n - 1))."""
        self.num_batches_tracked.add_(1)
        factor = self.momentum
        if factor is None:  # cumulative average, as PyTorch's BN with momentum=None
            factor = 1.0 / int(self.num_batches_tracked)
        variance = (square_mean - mean.square()) * (count / max(count - 1, 1))
        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
        self.running_var.lerp_(variance.detach().to(self.running_var.dtype), factor)

    def extra_repr(self) -> str:
        return super().extra_repr() + (
            f", window={self.window}, burnin_steps={self.burnin_steps}, "
            f"compensate={self.compensate}, rho={self.rho}"
        )


def cross_iteration_batch_norm(num_channels: int, **options: object) -> CrossIterationBatchNorm:
    """``cbn``: Cross-Iteration BN with Taylor compensation (k = 8, burn-in 1000 steps)."""
    return CrossIterationBatchNorm(num_channels, **options)


def naive_cross_iteration_batch_norm(
    num_channels: int, **options: object
) -> CrossIterationBatchNorm:
    """``cbn_naive``: the window of the last k iterations without compensation (paper baseline)."""
    options.setdefault("compensate", False)
    return CrossIterationBatchNorm(num_channels, **options)
