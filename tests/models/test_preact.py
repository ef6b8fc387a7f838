"""Pre-activation ResNet-18 for 32x32 inputs (models/preact.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.models import PreActBlock, preact_resnet18


def test_parameter_count_with_bn():
    # Convolutions (no bias): stem 3*64*9; stage widths w with input c: first block
    # c*w*9 + w*w*9 (+ c*w projection where c != w), second block 2 * w*w*9.
    convolutions = 3 * 64 * 9
    norms = 0
    channels = 64
    for width in (64, 128, 256, 512):
        convolutions += channels * width * 9 + 3 * width * width * 9
        convolutions += channels * width if channels != width else 0
        norms += 2 * (channels + width + 2 * width)  # gamma + beta of norm1/norm2 in two blocks
        channels = width
    norms += 2 * 512  # final norm
    head = 512 * 10 + 10
    model = preact_resnet18()
    assert sum(p.numel() for p in model.parameters()) == convolutions + norms + head
    assert convolutions + norms + head == 11_172_170  # "11.17M"


def test_output_shape_and_projection_shortcuts():
    model = preact_resnet18(num_classes=100, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    blocks = [m for m in model.modules() if isinstance(m, PreActBlock)]
    projections = [b.shortcut for b in blocks if b.shortcut is not None]
    assert len(blocks) == 8 and len(projections) == 3
    assert all(isinstance(p, nn.Conv2d) and p.kernel_size == (1, 1) for p in projections)


def test_block_is_pre_activation_with_identity_shortcut():
    torch.manual_seed(0)
    block = PreActBlock(8, 8, norm="gn").double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    out = block.conv1(torch.relu(block.norm1(x)))
    expected = block.conv2(torch.relu(block.norm2(out))) + x
    # Same float64 operations on both sides: equal to rounding.
    torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("norm", ["bn", "gn", "none", "frn", "gn_ws"])
def test_norms_plug_in(norm):
    model = preact_resnet18(norm=norm)
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_bad_dropout_is_refused():
    with pytest.raises(NormlabError, match="dropout"):
        preact_resnet18(dropout=-0.1)
