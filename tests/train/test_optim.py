"""Optimizer groups: weight decay on norm parameters and biases is a choice."""

import pytest
from torch import nn

from normlab.train import RunConfig, build_optimizer
from normlab.train.optim import learning_rate_factor


def model():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))


def test_norm_weight_decay_true_decays_everything():
    groups = build_optimizer(model(), RunConfig(weight_decay=0.1)).param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1


def test_norm_weight_decay_false_exempts_one_dimensional_parameters():
    groups = build_optimizer(
        model(), RunConfig(weight_decay=0.1, norm_weight_decay=False)
    ).param_groups
    decayed, exempt = groups
    assert [p.ndim for p in decayed["params"]] == [4]
    assert sorted(p.numel() for p in exempt["params"]) == [4, 4, 4]  # conv bias, BN gamma, beta
    assert exempt["weight_decay"] == 0.0


def test_cosine_factor():
    assert learning_rate_factor("cosine", 0, 10) == 1.0
    assert learning_rate_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert learning_rate_factor("cosine", 10, 10) == pytest.approx(0.0)
