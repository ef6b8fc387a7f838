"""``frn``: Filter Response Normalization + TLU (norms/response.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.norms import FilterResponseNorm, make_norm

# float64; the NumPy reference evaluates the paper's formula with the same operations.
TOLERANCE = 1e-10


def _randomized(layer: FilterResponseNorm) -> FilterResponseNorm:
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.num_channels))
        layer.bias.copy_(torch.randn(layer.num_channels))
        layer.tau.copy_(torch.randn(layer.num_channels) * 0.5)
    return layer.double()


def _numpy_frn(x, gamma, beta, tau, eps):
    axes = tuple(range(2, x.ndim))
    nu2 = np.mean(x**2, axis=axes, keepdims=True) if axes else x**2
    x_hat = x / np.sqrt(nu2 + abs(eps))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return np.maximum(gamma.reshape(shape) * x_hat + beta.reshape(shape), tau.reshape(shape))


def _parameters(layer):
    return [p.detach().numpy() for p in (layer.weight, layer.bias, layer.tau)]


@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (3, 4, 7), (3, 4)])
def test_matches_the_paper_formula(shape: tuple[int, ...]) -> None:
    layer = _randomized(make_norm("frn", 4))
    assert layer.eps == 1e-6
    x = torch.randn(*shape, dtype=torch.float64) * 2.0 + 0.5
    expected = _numpy_frn(x.numpy(), *_parameters(layer), 1e-6)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    # no batch statistics: the same in eval and sample by sample
    np.testing.assert_allclose(layer.eval()(x[1:2]).detach().numpy(), expected[1:2], atol=TOLERANCE)


def test_learnable_eps_is_bounded_below() -> None:
    layer = _randomized(make_norm("frn", 4, learnable_eps=True))
    with torch.no_grad():
        layer.eps_learned.fill_(-0.3)  # only |eps_learned| counts
    x = torch.randn(2, 4, 1, 1, dtype=torch.float64)  # 1x1 maps: where eps matters most
    expected = _numpy_frn(x.numpy(), *_parameters(layer), 1e-6 + 0.3)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    layer(x).sum().backward()
    assert layer.eps_learned.grad is not None and layer.eps_learned.grad != 0


def test_fixed_eps_has_no_parameter() -> None:
    names = {name for name, _ in make_norm("frn", 4).named_parameters()}
    assert names == {"weight", "bias", "tau"}


@pytest.mark.parametrize("learnable_eps", [False, True])
def test_gradcheck(learnable_eps: bool, check_gradients) -> None:
    layer = make_norm("frn", 3, learnable_eps=learnable_eps)
    assert check_gradients(layer, torch.randn(2, 3, 3, 3))
