"""The engine's model choice (RunConfig.model): the seed ResNet unchanged, built-ins, factories."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from normlab.data import synthetic
from normlab.errors import NormlabError
from normlab.models import CifarResNet, resnet
from normlab.train import RunConfig, build_model, check_config, train_run

CIFAR_SHAPED = {"num_examples": 80, "num_classes": 4, "channels": 3, "size": 16, "noise": 0.5}


@pytest.fixture(scope="module")
def rgb_data():
    return synthetic(**CIFAR_SHAPED)


@pytest.fixture
def user_models(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def test_resnet_builds_exactly_what_it_built_before(tiny_config, tiny_data):
    config = tiny_config.replace(dropout=0.1, init="skipinit")
    assert config.model == "resnet"
    torch.manual_seed(7)
    model = build_model(config, tiny_data)
    after_engine = torch.rand(3)
    torch.manual_seed(7)
    direct = resnet(
        norm="bn",
        depth=8,
        widths=(4, 8, 8),
        num_classes=4,
        in_channels=1,
        dropout=0.1,
        init="skipinit",
    )
    assert torch.equal(torch.rand(3), after_engine)  # the same RNG consumption
    assert repr(model) == repr(direct)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), direct.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_model_is_part_of_the_run_identity():
    assert RunConfig().to_dict()["model"] == "resnet"
    assert RunConfig(model="resnet20").run_id != RunConfig().run_id
    assert RunConfig.from_dict(RunConfig(model="resnet20").to_dict()).model == "resnet20"


def test_train_run_trains_resnet20_end_to_end(rgb_data):
    config = RunConfig(
        model="resnet20",
        dataset="synthetic",
        dataset_options=CIFAR_SHAPED,
        batch_size=16,
        lr=0.05,
        epochs=1,
        dropout=0.2,
    )
    torch.manual_seed(0)
    model = build_model(config, rgb_data)
    assert isinstance(model, CifarResNet) and model.dropout.p == 0.2
    result = train_run(config)  # loads the dataset from the config
    assert result.status == "done" and result.steps == 48 // 16
    assert 0.0 <= result.test_acc <= 1.0 and len(result.epochs) == 1


def test_factory_model_with_a_norm_of_the_study(user_models, rgb_data):
    config = RunConfig(model="user_models:bn_net", norm="gn", norm_options={"groups": 2}, epochs=1)
    model = build_model(config, rgb_data)
    assert isinstance(model[1], nn.GroupNorm) and model[0].in_channels == 3
    assert model[-1].out_features == 4
    result = train_run(config.replace(dataset="synthetic", dataset_options=CIFAR_SHAPED))
    assert result.status == "done"


def test_bn_momentum_reaches_a_factory_model_by_swap(user_models, rgb_data):
    config = RunConfig(model="user_models:bn_net", norm="bn", bn_momentum=0.2)
    model = build_model(config, rgb_data)
    assert all(
        m.momentum == 0.2 for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )


def test_dropout_cannot_be_given_to_a_factory(user_models, rgb_data):
    with pytest.raises(NormlabError, match="dropout=0.1 cannot be applied to model 'user_models"):
        check_config(RunConfig(model="user_models:bn_net", dropout=0.1), rgb_data)
    check_config(RunConfig(model="user_models:bn_net"), rgb_data)


def test_bad_model_reference_is_refused_before_training(rgb_data):
    with pytest.raises(NormlabError, match="model 'resnet21' is neither a built-in model"):
        check_config(RunConfig(model="resnet21"), rgb_data)
