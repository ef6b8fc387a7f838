"""``gn``, ``ln_chw`` and ``in`` (norms/group.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.norms import NormlabError, make_norm
from normlab.norms.group import default_groups

# float64; identities between layers computing the same statistics: exact up to rounding.
TOLERANCE = 1e-10


def _randomize_affine(*layers: torch.nn.Module) -> None:
    weight, bias = torch.randn(layers[0].weight.shape), torch.randn(layers[0].bias.shape)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)


def test_gn_with_one_group_is_ln_chw() -> None:
    gn, ln_chw = make_norm("gn", 8, groups=1).double(), make_norm("ln_chw", 8).double()
    _randomize_affine(gn, ln_chw)
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(gn(x), ln_chw(x), atol=TOLERANCE, rtol=0)


def test_gn_with_one_channel_per_group_is_in() -> None:
    gn, instance = make_norm("gn", 8, groups=8).double(), make_norm("in", 8).double()
    _randomize_affine(gn, instance)
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(gn(x), instance(x), atol=TOLERANCE, rtol=0)


def test_in_matches_numpy_and_is_the_same_in_eval() -> None:
    layer = make_norm("in", 4).double()
    _randomize_affine(layer)
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64) * 2.0 - 1.0
    data = x.numpy()
    mean = data.mean(axis=(2, 3), keepdims=True)
    variance = data.var(axis=(2, 3), keepdims=True)
    gamma = layer.weight.detach().numpy()[None, :, None, None]
    beta = layer.bias.detach().numpy()[None, :, None, None]
    expected = gamma * (data - mean) / np.sqrt(variance + 1e-5) + beta
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    np.testing.assert_allclose(layer.eval()(x).detach().numpy(), expected, atol=TOLERANCE)


def test_gn_groups_must_divide_channels() -> None:
    with pytest.raises(NormlabError, match="groups=3 does not divide num_channels=16"):
        make_norm("gn", 16, groups=3)


def test_default_groups() -> None:
    assert default_groups(64) == 8
    assert default_groups(12) == 6
    assert default_groups(7) == 7
    assert default_groups(11) == 1


@pytest.mark.parametrize("name", ["gn", "ln_chw", "in"])
def test_gradcheck(name: str, check_gradients) -> None:
    assert check_gradients(make_norm(name, 4), torch.randn(2, 4, 3, 3))
