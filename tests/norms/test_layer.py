"""``ln``: Keras LayerNormalization semantics, per position across channels (norms/layer.py)."""

from __future__ import annotations

import numpy as np
import torch

from normlab.norms import ChannelLayerNorm, make_norm

# float64; the reference loops over positions in NumPy, same arithmetic: 1e-10 is ample.
TOLERANCE = 1e-10


def test_ln_normalizes_each_position_across_channels() -> None:
    layer = make_norm("ln", 5).double()
    assert isinstance(layer, ChannelLayerNorm) and layer.eps == 1e-3
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 1.5, 5))
        layer.bias.copy_(torch.linspace(-1.0, 1.0, 5))
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64) * 3.0 + 2.0
    out = layer(x).detach().numpy()
    data, gamma, beta = x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy()
    expected = np.empty_like(data)
    for n in range(2):
        for h in range(3):
            for w in range(4):
                column = data[n, :, h, w]
                normalized = (column - column.mean()) / np.sqrt(column.var() + 1e-3)
                expected[n, :, h, w] = gamma * normalized + beta
    np.testing.assert_allclose(out, expected, atol=TOLERANCE)


def test_ln_has_no_batch_or_spatial_coupling() -> None:
    layer = make_norm("ln", 4).double()
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    full = layer(x)
    torch.testing.assert_close(full[1:2, :, 2:3, 1:2], layer(x[1:2, :, 2:3, 1:2]))


def test_ln_gradcheck(check_gradients) -> None:
    assert check_gradients(make_norm("ln", 4), torch.randn(2, 4, 3, 3))
