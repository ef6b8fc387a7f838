"""``bgn``: batch + group normalization of Summers & Dinneen 2020 (norms/batch_group.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normlab.norms import BatchGroupNorm, NormlabError, make_norm

# float64; NumPy and torch evaluate the same statistics: rounding only.
TOLERANCE = 1e-10
EPS = 1e-5


def _randomized(layer):
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape))
        layer.bias.copy_(torch.randn(layer.bias.shape))
    return layer.double()


def _numpy_bgn(x, gamma, beta, groups):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, -1)  # (N, G, C/G * H * W)
    mean = grouped.mean(axis=(0, 2), keepdims=True)
    variance = grouped.var(axis=(0, 2), keepdims=True)  # over batch AND group channels
    normalized = ((grouped - mean) / np.sqrt(variance + EPS)).reshape(x.shape)
    return gamma[None, :, None, None] * normalized + beta[None, :, None, None], mean, variance


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_training_matches_batch_and_group_statistics(groups: int) -> None:
    layer = _randomized(make_norm("bgn", 8, groups=groups))
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64) * 2.0 + 1.0
    gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    expected, mean, variance = _numpy_bgn(x.numpy(), gamma, beta, groups)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    count = x.numel() / groups
    np.testing.assert_allclose(layer.running_mean.numpy(), 0.1 * mean.ravel(), atol=TOLERANCE)
    unbiased = variance.ravel() * count / (count - 1)
    np.testing.assert_allclose(layer.running_var.numpy(), 0.9 + 0.1 * unbiased, atol=TOLERANCE)


def test_one_channel_per_group_is_bn() -> None:
    bgn = _randomized(make_norm("bgn", 4, groups=4))
    bn = make_norm("bn", 4).double()
    bn.load_state_dict({k: v for k, v in bgn.state_dict().items()})
    for _ in range(2):
        x = torch.randn(3, 4, 2, 2, dtype=torch.float64) + 0.5
        torch.testing.assert_close(bgn(x), bn(x), atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(bgn.running_var, bn.running_var, atol=TOLERANCE, rtol=0)
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(bgn.eval()(x), bn.eval()(x), atol=TOLERANCE, rtol=0)


def test_whole_batch_as_one_sample_is_gn() -> None:
    """Statistics over (batch, group) = GroupNorm of the batch laid side by side as one sample."""
    bgn = _randomized(make_norm("bgn", 8, groups=2))
    gn = make_norm("gn", 8, groups=2).double()
    gn.load_state_dict({"weight": bgn.weight, "bias": bgn.bias})
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    side_by_side = x.permute(1, 0, 2, 3).reshape(1, 8, 3 * 4, 4)
    expected = gn(side_by_side).reshape(8, 3, 4, 4).permute(1, 0, 2, 3)
    torch.testing.assert_close(bgn(x), expected, atol=TOLERANCE, rtol=0)


def test_eval_uses_running_group_statistics() -> None:
    layer = make_norm("bgn", 4, groups=2, affine=False).double()
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([1.0, -1.0]))
        layer.running_var.copy_(torch.tensor([4.0, 0.25]))
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    mean = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64).view(1, 4, 1, 1)
    variance = torch.tensor([4.0, 4.0, 0.25, 0.25], dtype=torch.float64).view(1, 4, 1, 1)
    expected = (x - mean) / torch.sqrt(variance + EPS)
    torch.testing.assert_close(layer.eval()(x), expected, atol=TOLERANCE, rtol=0)


def test_invalid_groups_and_batch_of_one() -> None:
    with pytest.raises(NormlabError, match="bgn: groups=3"):
        make_norm("bgn", 8, groups=3)
    with pytest.raises(NormlabError, match="batch of one"):
        BatchGroupNorm(8)(torch.randn(1, 8, 2, 2))


def test_gradcheck(check_gradients) -> None:
    assert check_gradients(make_norm("bgn", 4, groups=2), torch.randn(2, 4, 3, 3))
    assert check_gradients(make_norm("bgn", 4, groups=2).eval(), torch.randn(2, 4, 3, 3))
