"""The write-up's block: structure and Keras parameter counts."""

import pytest
import torch
from torch import nn

from normlab.models import seed_block


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def running_statistics(module: nn.Module) -> int:
    return sum(b.numel() for name, b in module.named_buffers() if "running" in name)


@pytest.mark.parametrize("norm", ["bn", "bn_keras"])
def test_bn_block_matches_keras_parameter_count(norm):
    # Keras: 2 x Conv2D(64, 3x3, bias) = 2 x 36,928; 2 x BatchNormalization = 2 x 128 trainable
    # (gamma, beta) + 2 x 128 non-trainable (moving mean, moving variance).
    block = seed_block(64, 64, norm=norm)
    assert trainable(block) == 74_112
    assert running_statistics(block) == 256


def test_block_without_normalization_matches_keras():
    block = seed_block(64, 64, norm="none")
    assert trainable(block) == 73_856
    assert running_statistics(block) == 0


def test_layernorm_block_matches_keras():
    # Keras LayerNormalization(axis=-1) has gamma and beta of shape (channels,).
    assert trainable(seed_block(64, 64, norm="ln")) == 74_112


def test_block_order_is_post_activation():
    block = seed_block(8, 8, norm="none").double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    relu = torch.relu
    expected = relu(block.conv2(relu(block.conv1(x))) + x)
    assert torch.allclose(block(x), expected)


def test_projection_shortcut_only_where_channels_change():
    assert isinstance(seed_block(8, 8).shortcut, nn.Identity)
    projection = seed_block(3, 8).shortcut
    assert isinstance(projection, nn.Conv2d) and projection.kernel_size == (1, 1)
    assert seed_block(3, 8)(torch.randn(2, 3, 6, 6)).shape == (2, 8, 6, 6)


def test_unknown_norm_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: bn, bn_keras"):
        seed_block(4, 4, norm="batchnorm")
