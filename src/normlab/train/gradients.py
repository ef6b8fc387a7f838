"""Gradient statistics the engine can record per step (the diagnostics' stability records read
them). Here, in ``train``, so that the engine can call it without importing a layer above."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def global_gradient_norm(model: nn.Module) -> float:
    """L2 norm of all gradients of ``model`` together, ``sqrt(sum_p ||grad_p||^2)`` (float64).

    Call it after ``loss.backward()`` and before any clipping, to record what the loss produced.
    Parameters without a gradient are skipped; 0.0 when none has one.
    """
    norms = [
        torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64)
        for p in model.parameters()
        if p.grad is not None
    ]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms)))


@torch.no_grad()
def packed_gradient_norms(parameters: Iterable[nn.Parameter], count: int) -> list[float]:
    """Each run's :func:`global_gradient_norm` in a packed model of ``count`` runs
    (``train/packed_model.py``): every packed tensor is the runs' tensors concatenated along
    dim 0, so run k's gradient is ``grad.view(count, -1)[k]``.

    Each tensor's per-run norms are taken in the gradient's own dtype (float32 in training:
    relative rounding about 1e-7, far below the float32 differences between a packed run and
    the run alone; a float64 copy of every gradient made this 15x slower at 64 runs) and
    combined in float64."""
    per_tensor = [
        torch.linalg.vector_norm(parameter.grad.view(count, -1), dim=1).to(torch.float64)
        for parameter in parameters
        if parameter.grad is not None
    ]
    if not per_tensor:
        return [0.0] * count
    return torch.stack(per_tensor).square().sum(dim=0).sqrt().tolist()
