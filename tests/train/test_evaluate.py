"""Evaluation with running vs batch statistics."""

import copy

import torch
from torch import nn

from normlab.norms import make_norm
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


def test_batch_statistics_of_brn_are_its_training_transform():
    """Batch mode is the forward the network trained with: for brn past its warm-up that
    includes r and d (unlike PreciseBN's pass, which turns them off), so it is not BN's."""
    torch.manual_seed(0)
    options = {"warmup_steps": 0, "relax_steps": 0, "d_relax_steps": 0, "momentum": 0.0}
    renorm = nn.Sequential(
        nn.Conv2d(1, 4, 3), make_norm("brn", 4, **options), nn.Flatten(), nn.Linear(64, 3)
    ).double()
    with torch.no_grad():
        renorm[1].running_mean.fill_(3.0)  # stale statistics: r and d far from 1 and 0
        renorm[1].running_var.fill_(0.1)
    x = torch.randn(8, 1, 6, 6, dtype=torch.float64) * 2 + 1
    as_trained = copy.deepcopy(renorm).train()(x).argmax(1)
    assert accuracy(renorm, x, as_trained, statistics="batch", batch_size=8) == 1.0
    plain = copy.deepcopy(renorm).train()
    plain[1].renormalize = False
    assert not torch.equal(plain(x).argmax(1), as_trained)  # the setup exercises r and d
