"""``bn`` and ``bn_keras`` (norms/batch.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from normlab.norms import BatchNorm, NormlabError, make_norm

# float64 throughout: the same formula evaluated two ways agrees to ~1e-15; 1e-10 leaves margin
# for reductions over a few hundred values without hiding a wrong formula (errors ~1e-2).
TOLERANCE = 1e-10


def test_bn_matches_torch_batchnorm2d() -> None:
    ours = make_norm("bn", 6).double()
    reference = nn.BatchNorm2d(6).double()
    x = torch.randn(5, 6, 4, 4, dtype=torch.float64)
    for _ in range(3):
        torch.testing.assert_close(ours(x), reference(x), atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(ours.running_var, reference.running_var)
    ours.eval(), reference.eval()
    torch.testing.assert_close(ours(x), reference(x), atol=TOLERANCE, rtol=0)


def test_bn_keras_updates_running_var_with_biased_variance() -> None:
    layer = make_norm("bn_keras", 3).double()
    assert layer.momentum == pytest.approx(0.01) and layer.eps == pytest.approx(1e-3)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 2.0 + 1.0
    out = layer(x)
    values = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    mean, biased = values.mean(axis=1), values.var(axis=1, ddof=0)
    np.testing.assert_allclose(layer.running_mean.numpy(), 0.01 * mean, atol=TOLERANCE)
    np.testing.assert_allclose(layer.running_var.numpy(), 0.99 + 0.01 * biased, atol=TOLERANCE)
    # the output itself is ordinary BN with eps 1e-3
    expected = (x.numpy() - mean[None, :, None, None]) / np.sqrt(biased[None, :, None, None] + 1e-3)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=TOLERANCE)


def test_bn_updates_running_var_with_unbiased_variance() -> None:
    layer = make_norm("bn", 3).double()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    layer(x)
    values = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1)
    expected = 0.9 + 0.1 * values.var(axis=1, ddof=1)
    np.testing.assert_allclose(layer.running_var.numpy(), expected, atol=TOLERANCE)


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (4, 3, 2, 3, 2)])
def test_bn_takes_any_rank(shape: tuple[int, ...]) -> None:
    layer = BatchNorm(3).double()
    x = torch.randn(*shape, dtype=torch.float64)
    out = layer(x)
    dims = [0, *range(2, x.dim())]
    torch.testing.assert_close(out.mean(dim=dims), torch.zeros(3, dtype=torch.float64))


def test_training_batch_of_one_refused_with_clear_message() -> None:
    with pytest.raises(NormlabError, match="batch of one sample"):
        make_norm("bn", 3)(torch.randn(1, 3, 1, 1))


def test_invalid_momentum_refused() -> None:
    with pytest.raises(NormlabError, match="momentum"):
        make_norm("bn", 3, momentum=1.5)


def test_bn_gradcheck(check_gradients) -> None:
    assert check_gradients(make_norm("bn", 3), torch.randn(4, 3, 3, 3))
    assert check_gradients(make_norm("bn_keras", 3), torch.randn(4, 3, 3, 3))
