"""Adaptive gradient clipping (AGC), unit-wise, applied between backward and the optimizer step.

Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image Recognition Without
Normalization" (NFNets), Section 4.1. For each unit ``i`` of a parameter ``W`` with gradient
``G`` (a row of a linear weight, an output channel of a convolution)::

    G_i <- lambda * max(||W_i||, eps) / ||G_i|| * G_i    if ||G_i|| / max(||W_i||, eps) > lambda
    G_i                                                   otherwise

with Frobenius norms and ``eps = 1e-3``, which keeps zero-initialized parameters (Fixup's last
branch layers, scalar biases) from having their updates clipped to nothing.

Units follow the authors' reference (``optax.adaptive_grad_clip``, whose ``unitwise_norm`` takes
the norm of the whole tensor for scalars and vectors): a parameter with one dimension or none
(a bias vector, a norm's scale, a scalar) is ONE unit, clipped by its whole norm. The reference
squeezes size-1 dimensions first; here a weight with size-1 trailing dimensions still has one
unit per output channel (it differs only for weights such as ``(C, 1, 1, 1)``).

The final linear layer (the classifier) is not clipped: the paper finds clipping it hurts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from normlab.errors import NormlabError

AGC_EPS = 1e-3
"""``eps`` of the paper: the smallest parameter norm a unit's clipping threshold is scaled by."""


def check_clipping(clipping: float) -> None:
    """Refuse a clipping threshold ``lambda`` that is not a positive finite number."""
    if not (isinstance(clipping, (int, float)) and math.isfinite(clipping) and clipping > 0):
        raise NormlabError(
            f"agc_clip must be a positive number (or None for off), got {clipping!r}"
        )


def unitwise_norm(tensor: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each unit, shaped to broadcast against ``tensor``.

    Tensors of at most one dimension are one unit (a 0-d result); others have one unit per
    index of their first (output) dimension, normed over all remaining dimensions.
    """
    if tensor.ndim <= 1:
        return torch.linalg.vector_norm(tensor)
    norms = torch.linalg.vector_norm(tensor.flatten(1), dim=1)
    return norms.view(-1, *([1] * (tensor.ndim - 1)))


@torch.no_grad()
def clip_gradients_unitwise(
    parameters: Iterable[torch.Tensor], clipping: float, eps: float = AGC_EPS
) -> None:
    """Clip the ``.grad`` of each parameter in place, unit by unit, at ratio ``clipping``."""
    check_clipping(clipping)
    for parameter in parameters:
        grad = parameter.grad
        if grad is None:
            continue
        max_norm = unitwise_norm(parameter).clamp(min=eps) * clipping
        grad_norm = unitwise_norm(grad)
        # The floor only avoids 0/0 where the unit is not clipped anyway (as in the reference).
        clipped = grad * (max_norm / grad_norm.clamp(min=1e-6))
        grad.copy_(torch.where(grad_norm > max_norm, clipped, grad))


def classifier(model: nn.Module) -> nn.Linear | None:
    """The model's final linear layer: the last :class:`~torch.nn.Linear` it registers."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def clipped_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every trainable parameter of ``model`` except those of its classifier."""
    head = classifier(model)
    excluded = {id(p) for p in head.parameters()} if head is not None else set()
    return [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]


def adaptive_clip_gradients(model: nn.Module, clipping: float, eps: float = AGC_EPS) -> None:
    """AGC on every parameter of ``model`` but its classifier (call after ``backward``)."""
    clip_gradients_unitwise(clipped_parameters(model), clipping, eps)
