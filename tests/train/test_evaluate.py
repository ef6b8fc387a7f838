"""Evaluation with running vs batch statistics."""

import torch
from torch import nn

from normlab.train.evaluate import accuracy, chunks


def test_chunks_merge_a_trailing_single_example():
    assert chunks(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert chunks(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert chunks(1, 4) == [(0, 1)]


def test_batch_statistics_mode_leaves_the_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten())
    model = nn.Sequential(model, nn.LazyLinear(3))
    x, y = torch.randn(20, 1, 6, 6) * 3 + 1, torch.randint(0, 3, (20,))
    model(x)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    accuracy(model, x, y, statistics="batch", batch_size=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training


def test_batch_statistics_differ_from_running_statistics():
    # A BN whose running statistics are far from the data: eval mode and batch mode disagree.
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(2)
    bn.running_mean.fill_(5.0)
    model = nn.Sequential(bn, nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    x = torch.randn(32, 2, 4, 4)
    y = model.eval()(x).argmax(1)  # labels = the running-statistics predictions
    assert accuracy(model, x, y, statistics="running") == 1.0
    assert accuracy(model, x, y, statistics="batch", batch_size=8) < 1.0
