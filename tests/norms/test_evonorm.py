"""``evonorm_s0`` and ``evonorm_b0`` (norms/evonorm.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.norms import EvoNormB0, EvoNormS0, NormlabError, make_norm

# float64; NumPy evaluates the paper's formulas with the same operations: rounding only.
TOLERANCE = 1e-10
EPS = 1e-5


def _randomized(layer):
    with torch.no_grad():
        for parameter in (layer.weight, layer.bias, layer.v):
            parameter.copy_(torch.randn(parameter.shape))
    return layer.double()


def _channel(values: np.ndarray) -> np.ndarray:
    return values[None, :, None, None]


def _numpy_s0(x, gamma, beta, v, groups):
    n, c, h, w = x.shape
    grouped = x.reshape(n, groups, c // groups, h, w)
    std = np.sqrt(grouped.var(axis=(2, 3, 4), keepdims=True) + EPS)
    std = np.broadcast_to(std, grouped.shape).reshape(x.shape)
    sigmoid = 1.0 / (1.0 + np.exp(-_channel(v) * x))
    return x * sigmoid / std * _channel(gamma) + _channel(beta)


def _numpy_b0(x, gamma, beta, v, batch_variance):
    instance = np.sqrt(x.var(axis=(2, 3), keepdims=True) + EPS)
    denominator = np.maximum(np.sqrt(_channel(batch_variance) + EPS), _channel(v) * x + instance)
    return x / denominator * _channel(gamma) + _channel(beta)


def _parameters(layer):
    return [p.detach().numpy() for p in (layer.weight, layer.bias, layer.v)]


@pytest.mark.parametrize("groups", [None, 1, 2, 8])
def test_s0_matches_the_paper_formula(groups: int | None) -> None:
    layer = _randomized(make_norm("evonorm_s0", 8, groups=groups))
    assert layer.groups == (groups or 8)  # default: gn's default groups
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64) * 2.0 + 0.3
    expected = _numpy_s0(x.numpy(), *_parameters(layer), layer.groups)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    np.testing.assert_allclose(layer.eval()(x).detach().numpy(), expected, atol=TOLERANCE)


def test_b0_matches_the_paper_formula_in_training_and_inference() -> None:
    layer = _randomized(make_norm("evonorm_b0", 4))
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64) * 1.5 - 0.5
    data = x.numpy()
    batch_variance = data.transpose(1, 0, 2, 3).reshape(4, -1).var(axis=1)  # biased
    expected = _numpy_b0(data, *_parameters(layer), batch_variance)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    running = 0.9 * np.ones(4) + 0.1 * batch_variance
    np.testing.assert_allclose(layer.running_var.numpy(), running, atol=TOLERANCE)
    layer.eval()
    expected_eval = _numpy_b0(data, *_parameters(layer), running)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected_eval, atol=TOLERANCE)
    np.testing.assert_allclose(layer.running_var.numpy(), running, atol=TOLERANCE)


def test_s0_groups_must_divide_channels() -> None:
    with pytest.raises(NormlabError, match="evonorm_s0: groups=3"):
        make_norm("evonorm_s0", 8, groups=3)


def test_b0_refuses_training_batch_of_one() -> None:
    with pytest.raises(NormlabError, match="batch of one"):
        make_norm("evonorm_b0", 4)(torch.randn(1, 4, 2, 2))


def test_gradcheck(check_gradients) -> None:
    assert check_gradients(EvoNormS0(4, groups=2), torch.randn(2, 4, 3, 3))
    assert check_gradients(EvoNormB0(4), torch.randn(3, 4, 3, 3))
    assert check_gradients(EvoNormB0(4).eval(), torch.randn(3, 4, 3, 3))
