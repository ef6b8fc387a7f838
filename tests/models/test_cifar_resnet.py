"""He et al. 2016 CIFAR ResNets (models/cifar_resnet.py): sizes, option A shortcuts, every norm."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from normlab import norm_names
from normlab.errors import NormlabError
from normlab.models import BasicBlock, ShortcutA, cifar_resnet, resnet20, resnet32, resnet56


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_resnet20_has_the_papers_parameter_count():
    # Hand count, bias-free convolutions: stem 3*16*9 = 432; stage 1: 6 x 16*16*9 = 13,824;
    # stage 2: 16*32*9 + 5 x 32*32*9 = 50,688; stage 3: 32*64*9 + 5 x 64*64*9 = 202,752;
    # 19 BNs: 2 x (16 + 6*16 + 6*32 + 6*64) = 1,376; linear 64*10 + 10 = 650.
    model = resnet20()
    assert parameter_count(model) == 432 + 13_824 + 50_688 + 202_752 + 1_376 + 650 == 269_722
    # The "272,474" of some reference implementations is option B (1x1 projection conv + BN at
    # the two stage transitions) instead of the paper's parameter-free option A.
    for block in model.modules():
        if isinstance(block, BasicBlock) and isinstance(block.shortcut, ShortcutA):
            shortcut = block.shortcut
            block.shortcut = nn.Sequential(
                nn.Conv2d(shortcut.in_channels, shortcut.out_channels, 1, bias=False),
                nn.BatchNorm2d(shortcut.out_channels),
            )
    assert parameter_count(model) == 272_474


def test_deeper_cifar_resnets_match_the_paper():
    # He et al. 2016, Table 6: ResNet-32 0.46M, ResNet-56 0.85M.
    assert parameter_count(resnet32()) == 464_154
    assert parameter_count(resnet56()) == 853_018


@pytest.mark.parametrize("depth, blocks", [(20, 9), (32, 15), (56, 27)])
def test_depth_counts_weighted_layers(depth, blocks):
    model = cifar_resnet(depth)
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len([m for m in model.modules() if isinstance(m, BasicBlock)]) == blocks
    assert len(convolutions) + 1 == depth  # every convolution is 3x3; + the linear layer
    assert all(c.kernel_size == (3, 3) and c.bias is None for c in convolutions)


def test_output_shapes_for_other_inputs_and_classes():
    model = resnet20(num_classes=7, in_channels=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert model(torch.randn(3, 1, 15, 15)).shape == (3, 7)  # odd sizes: both paths ceil(H/2)


def test_option_a_shortcut_is_parameter_free_subsampling_and_zero_channels():
    model = resnet20()
    shortcuts = [m for m in model.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2  # first block of stages 2 and 3
    assert all(parameter_count(s) == 0 and not list(s.buffers()) for s in shortcuts)
    x = torch.randn(2, 16, 9, 9, dtype=torch.float64)
    out = ShortcutA(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 5, 5)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(out[:, 16:], torch.zeros(2, 16, 5, 5, dtype=torch.float64))


def test_basic_block_computes_the_post_activation_formula():
    torch.manual_seed(0)
    block = BasicBlock(4, 8, stride=2, norm="bn").double().eval()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    branch = block.norm2(block.conv2(torch.relu(block.norm1(block.conv1(x)))))
    padded = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 4, 3, 3, dtype=torch.float64)], dim=1)
    # Same operations in float64: the two agree to rounding (1e-12 is far above it).
    torch.testing.assert_close(block(x), torch.relu(branch + padded), rtol=0, atol=1e-12)


def test_he_initialization_of_convolutions():
    torch.manual_seed(0)
    model = resnet20()
    conv = model.stages[2][1].conv1  # 64 -> 64, 36,864 weights
    expected = math.sqrt(2.0 / (64 * 9))  # fan_out = out channels x kernel area
    # 36,864 draws: the sample std is within ~0.4 % of the true one (1 sigma); 3 % is safe and
    # still tells fan_out from PyTorch's default (std = 1 / sqrt(3 fan_in), 42 % smaller).
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("norm", norm_names())
def test_every_registered_norm_builds_and_trains_a_step(norm):
    torch.manual_seed(0)
    model = resnet20(norm=norm)
    out = model(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_dropout_before_the_classifier():
    model = resnet20(dropout=0.3)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.3 and model.dropout is dropouts[0]
    assert not any(isinstance(m, nn.Dropout) for m in resnet20().modules())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"depth": 21}, "depth=21 is not 6n \\+ 2"),
        ({"depth": 2}, "depth=2"),
        ({"dropout": 1.0}, "dropout"),
        ({"norm": "batchnorm"}, "unknown normalization 'batchnorm'"),
    ],
)
def test_bad_arguments_are_one_line_errors(options, message):
    with pytest.raises(NormlabError, match=message) as caught:
        cifar_resnet(**options)
    assert "\n" not in str(caught.value)
