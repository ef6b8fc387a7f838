"""``gn_ws``: Weight Standardization (norms/weight_std.py) and its pairing in the model builder."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.models import resnet, seed_block
from normlab.norms import (
    CenteredConv2d,
    WSConv2d,
    centralize_weight,
    make_norm,
    norm_entry,
    standardize_weight,
)

# float64; standardization in NumPy and torch: rounding only.
TOLERANCE = 1e-10


def test_weight_is_standardized_per_output_channel() -> None:
    conv = WSConv2d(3, 5, 3, padding=1).double()
    weight = conv.weight.detach().numpy()
    flat = weight.reshape(5, -1)
    mean, variance = flat.mean(axis=1), flat.var(axis=1)  # biased, as in the paper
    expected = (flat - mean[:, None]) / np.sqrt(variance[:, None] + 1e-5)
    standardized = standardize_weight(conv.weight, conv.eps).detach().numpy().reshape(5, -1)
    np.testing.assert_allclose(standardized, expected, atol=TOLERANCE)
    np.testing.assert_allclose(standardized.mean(axis=1), 0.0, atol=TOLERANCE)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    reference = F.conv2d(x, torch.from_numpy(expected.reshape(weight.shape)), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), reference, atol=TOLERANCE, rtol=0)


def test_output_is_invariant_to_weight_shift_and_scale() -> None:
    conv = WSConv2d(2, 3, 3, padding=1, bias=False, eps=0.0).double()
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(3.0)
    torch.testing.assert_close(conv(x), before, atol=TOLERANCE, rtol=0)


def test_gradcheck_through_standardization() -> None:
    conv = WSConv2d(2, 3, 3, padding=1).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_()

    def function(inputs, weight):
        return F.conv2d(inputs, standardize_weight(weight, conv.eps), conv.bias, padding=1)

    assert torch.autograd.gradcheck(function, (x, weight), eps=1e-6, atol=1e-6)


def test_gn_ws_entry_is_groupnorm_with_standardized_convs() -> None:
    assert norm_entry("gn_ws").weight_standardized_conv
    assert isinstance(make_norm("gn_ws", 16), nn.GroupNorm)


def test_seed_block_pairs_ws_convs_with_gn_ws_only() -> None:
    block = seed_block(8, 16, norm="gn_ws")
    assert isinstance(block.conv1, WSConv2d) and isinstance(block.conv2, WSConv2d)
    assert type(block.shortcut) is nn.Conv2d  # feeds the addition, not a norm
    plain = seed_block(8, 16, norm="gn")
    assert not any(isinstance(m, WSConv2d) for m in plain.modules())
    assert block(torch.randn(2, 8, 6, 6)).shape == (2, 16, 6, 6)


def test_resnet_stem_and_blocks_use_ws_convs_for_gn_ws() -> None:
    model = resnet("gn_ws", depth=8, widths=(8, 16, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    standardized = [m for m in convs if isinstance(m, WSConv2d)]
    assert isinstance(model.stem[0], WSConv2d)
    assert len(standardized) == 1 + 2 * 3  # stem + two per block; projections stay plain
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert not any(isinstance(m, WSConv2d) for m in resnet("bn").modules())


def test_centered_conv_subtracts_each_filters_mean_float64():
    torch.manual_seed(0)
    conv = CenteredConv2d(3, 5, 3, padding=1).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = conv.weight.detach()
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)  # the paper's CenConv2d filter
    expected = torch.nn.functional.conv2d(x, centred, conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=1e-12, atol=1e-12)
    assert centralize_weight(w).mean(dim=(1, 2, 3)).abs().max() < 1e-15


def test_models_centre_the_convolutions_that_feed_mabn_only():
    mabn = resnet("mabn", depth=8, widths=(4, 8, 8))
    convs = [m for m in mabn.modules() if isinstance(m, torch.nn.Conv2d)]
    feeding = [m for m in convs if m.kernel_size == (3, 3)]
    assert feeding and all(isinstance(m, CenteredConv2d) for m in feeding)
    bn = resnet("bn", depth=8, widths=(4, 8, 8))
    assert not any(isinstance(m, CenteredConv2d) for m in bn.modules())
