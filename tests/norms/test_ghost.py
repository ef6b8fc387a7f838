"""``gbn``: Ghost BatchNorm (norms/ghost.py)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms import GhostBatchNorm, NormlabError, make_norm

# float64; the same BN arithmetic on the same values, so only rounding differs.
TOLERANCE = 1e-10


def _pair(virtual_batch_size: int, channels: int = 3):
    ghost = make_norm("gbn", channels, virtual_batch_size=virtual_batch_size).double()
    bn = make_norm("bn", channels).double()
    with torch.no_grad():
        weight, bias = torch.randn(channels), torch.randn(channels)
        for layer in (ghost, bn):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return ghost, bn


def test_is_a_batchnorm() -> None:
    assert isinstance(make_norm("gbn", 4), _BatchNorm)


def test_virtual_batch_equal_to_batch_is_bn() -> None:
    ghost, bn = _pair(virtual_batch_size=8)
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    for _ in range(2):
        out_ghost, out_bn = ghost(x), bn(y)
        torch.testing.assert_close(out_ghost, out_bn, atol=TOLERANCE, rtol=0)
    (out_ghost * out_ghost.detach()).sum().backward()
    (out_bn * out_bn.detach()).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(ghost.weight.grad, bn.weight.grad, atol=TOLERANCE, rtol=0)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ghost, name), getattr(bn, name))
    ghost.eval(), bn.eval()
    torch.testing.assert_close(ghost(x), bn(y), atol=TOLERANCE, rtol=0)


def test_batch_smaller_than_virtual_size_is_one_virtual_batch() -> None:
    ghost, bn = _pair(virtual_batch_size=16)
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(ghost(x), bn(x), atol=TOLERANCE, rtol=0)


def test_each_virtual_batch_is_normalized_and_tracked_in_order() -> None:
    ghost, bn = _pair(virtual_batch_size=4)
    x = torch.randn(12, 3, 2, 2, dtype=torch.float64)
    out = ghost(x)
    # BN applied to the three virtual batches one after the other: same outputs, and the
    # running statistics receive one update per virtual batch, in order (Hoffer et al., Alg. 1).
    expected = torch.cat([bn(x[i : i + 4]) for i in range(0, 12, 4)])
    torch.testing.assert_close(out, expected, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(ghost.running_mean, bn.running_mean, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(ghost.running_var, bn.running_var, atol=TOLERANCE, rtol=0)
    assert int(ghost.num_batches_tracked) == 3


def test_indivisible_batch_is_split_as_evenly_as_possible() -> None:
    ghost, bn = _pair(virtual_batch_size=4)
    assert ghost.num_virtual_batches(11) == 2  # sizes 6 and 5: never below the virtual size
    assert ghost.num_virtual_batches(3) == 1
    x = torch.randn(11, 3, 2, 2, dtype=torch.float64)
    expected = torch.cat([bn(x[:6]), bn(x[6:])])
    torch.testing.assert_close(ghost(x), expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("value", [1, 0, 2.5, True])
def test_invalid_virtual_batch_size(value: object) -> None:
    with pytest.raises(NormlabError, match="virtual_batch_size"):
        GhostBatchNorm(3, virtual_batch_size=value)


def test_gradcheck(check_gradients) -> None:
    layer = make_norm("gbn", 3, virtual_batch_size=2)
    assert check_gradients(layer, torch.randn(5, 3, 2, 2))
    assert check_gradients(layer.eval(), torch.randn(5, 3, 2, 2))
