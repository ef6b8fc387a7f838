"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan 2020, "Filter
Response Normalization Layer: Eliminating Batch Dependence in the Training of Deep Neural
Networks").

Per sample n and channel c, with nu^2 the mean of x^2 over the spatial positions::

    x_hat = x / sqrt(nu^2 + |eps|)
    y     = max(gamma * x_hat + beta, tau)          # TLU: a learned threshold per channel

No mean is subtracted and nothing is shared across the batch. ``eps`` is 1e-6 (paper). With
``learnable_eps`` the paper's learned epsilon is used, bounded below by the fixed one:
``eps_eff = eps + |eps_learned|`` with ``eps_learned`` one scalar per layer initialized at 1e-4
(our initial value); it matters for small spatial sizes, where x / sqrt(nu^2) tends to sign(x).
For (N, C) inputs nu^2 is x^2 itself (one position).
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import NormlabError

LEARNED_EPS_INIT = 1e-4


class FilterResponseNorm(nn.Module):
    """FRN + TLU for inputs (N, C, *spatial); gamma, beta, tau of shape (C,)."""

    def __init__(self, num_channels: int, eps: float = 1e-6, learnable_eps: bool = False) -> None:
        super().__init__()
        if not eps >= 0.0:
            raise NormlabError(f"frn: eps must be >= 0, got {eps}")
        self.num_channels = num_channels
        self.eps = eps
        self.learnable_eps = learnable_eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.tau = nn.Parameter(torch.zeros(num_channels))
        self.eps_learned = nn.Parameter(torch.tensor(LEARNED_EPS_INIT)) if learnable_eps else None

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.tau)
        if self.eps_learned is not None:
            nn.init.constant_(self.eps_learned, LEARNED_EPS_INIT)

    def effective_eps(self) -> torch.Tensor | float:
        """The epsilon added to nu^2: |eps|, or eps + |eps_learned| when learnable."""
        if self.eps_learned is None:
            return abs(self.eps)
        return self.eps + self.eps_learned.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise NormlabError(f"frn expects (N, C, ...) input, got shape {tuple(x.shape)}")
        spatial = tuple(range(2, x.dim()))
        nu2 = x.square().mean(dim=spatial, keepdim=True) if spatial else x.square()
        x_hat = x * torch.rsqrt(nu2 + self.effective_eps())
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = self.weight.view(shape) * x_hat + self.bias.view(shape)
        return torch.maximum(out, self.tau.view(shape))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, learnable_eps={self.learnable_eps}"


def filter_response_norm(num_channels: int, **options: object) -> FilterResponseNorm:
    """``frn``: FRN + TLU, fixed eps 1e-6 unless ``learnable_eps=True``."""
    return FilterResponseNorm(num_channels, **options)
