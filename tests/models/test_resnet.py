"""ResNet builder: shapes, depth arithmetic, dropout placement, clear errors."""

import pytest
import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.models import SeedBlock, resnet


def test_depth_20_has_three_blocks_per_stage():
    model = resnet("bn", depth=20, widths=(16, 32, 64), num_classes=10, in_channels=1)
    blocks = [m for m in model.modules() if isinstance(m, SeedBlock)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(blocks) == 9
    assert len(convs) + 1 == 20  # 3x3 convolutions + the linear head
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("norm", ["bn", "none", "ln", "gn", "ln_chw", "bn_keras"])
def test_every_base_norm_builds_and_trains_a_step(norm):
    model = resnet(norm, depth=8, widths=(8, 8, 8), num_classes=3, in_channels=2)
    loss = model(torch.randn(4, 2, 8, 8)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_depth_names_valid_depths():
    with pytest.raises(NormlabError, match="valid depths: 8, 14, 20"):
        resnet("bn", depth=9)


@pytest.mark.parametrize("position", ["head", "before_norm", "after_norm"])
def test_dropout_positions(position):
    model = resnet("bn", depth=8, widths=(4, 4, 4), dropout=0.5, dropout_position=position)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(d.p == 0.5 for d in dropouts)
    if position == "head":
        assert len(dropouts) == 1
    else:
        assert len(dropouts) == 3  # one per block


def test_bad_dropout_position():
    with pytest.raises(NormlabError, match="dropout_position"):
        resnet("bn", dropout=0.1, dropout_position="middle")
