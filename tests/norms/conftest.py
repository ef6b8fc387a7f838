"""Shared helpers for the norm tests: float64 gradcheck of a layer's input AND parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def gradcheck_layer(layer: nn.Module, x: torch.Tensor, perturb: float = 0.1) -> bool:
    """``torch.autograd.gradcheck`` w.r.t. the input and every parameter, in float64.

    Parameters are moved away from their initial values (ones/zeros) by ``perturb`` so that the
    check does not pass by symmetry.
    """
    generator = torch.Generator().manual_seed(1234)
    layer = layer.double()
    names = [name for name, _ in layer.named_parameters()]
    parameters = []
    for _, parameter in layer.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
        parameters.append((parameter.detach() + perturb * noise).requires_grad_())
    buffers = dict(layer.named_buffers())

    def function(inputs: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        state = {**dict(zip(names, values, strict=True)), **buffers}
        return torch.func.functional_call(layer, state, (inputs,))

    inputs = x.detach().double().requires_grad_()
    return torch.autograd.gradcheck(function, (inputs, *parameters), eps=1e-6, atol=1e-6)


@pytest.fixture
def check_gradients():
    return gradcheck_layer


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
