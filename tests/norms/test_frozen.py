"""``frozen_bn``: BN with fixed running statistics (norms/frozen.py)."""

from __future__ import annotations

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms import make_norm

# float64; identical arithmetic (F.batch_norm in inference mode) on both sides.
TOLERANCE = 1e-12


def _trained_bn():
    bn = make_norm("bn", 4).double()
    for _ in range(3):
        bn(torch.randn(8, 4, 3, 3, dtype=torch.float64) * 2.0 + 1.0)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(4))
        bn.bias.copy_(torch.randn(4))
    return bn.eval()


def test_frozen_bn_equals_bn_in_eval_in_both_modes() -> None:
    bn = _trained_bn()
    frozen = make_norm("frozen_bn", 4).double()
    frozen.load_state_dict(bn.state_dict())
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    expected = bn(x)
    for mode in (True, False):
        frozen.train(mode)
        torch.testing.assert_close(frozen(x), expected, atol=TOLERANCE, rtol=0)


def test_statistics_never_move() -> None:
    frozen = make_norm("frozen_bn", 4)
    before = {name: value.clone() for name, value in frozen.named_buffers()}
    frozen.train()(torch.randn(6, 4, 2, 2) + 5.0)
    for name, value in frozen.named_buffers():
        torch.testing.assert_close(value, before[name])
    assert isinstance(frozen, _BatchNorm)


def test_batch_of_one_is_fine_in_training() -> None:
    assert make_norm("frozen_bn", 4).train()(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)


def test_gradcheck(check_gradients) -> None:
    assert check_gradients(make_norm("frozen_bn", 3), torch.randn(3, 3, 2, 2))
