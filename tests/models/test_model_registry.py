"""Model registry (models/registry.py): names, builds, options, descriptions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.models import (
    MODEL_DESCRIPTIONS,
    MODELS,
    ModelEntry,
    build_builtin_model,
    describe_models,
    model_names,
    register_model,
    resnet,
)


@pytest.fixture
def restore_registry():
    saved = dict(MODELS)
    yield
    MODELS.clear()
    MODELS.update(saved)


def test_builtin_names_and_descriptions():
    assert model_names()[:5] == ["resnet", "resnet20", "resnet32", "resnet56", "preact_resnet18"]
    assert set(MODEL_DESCRIPTIONS) == set(model_names())


def test_describe_models_counts_parameters_with_bn_and_ten_classes():
    rows = {name: (shape, count) for name, shape, count, _ in describe_models()}
    assert rows["resnet"] == ("1x8x8", 77_898)
    assert rows["resnet20"] == ("3x32x32", 269_722)
    assert rows["resnet32"] == ("3x32x32", 464_154)
    assert rows["resnet56"] == ("3x32x32", 853_018)
    assert rows["preact_resnet18"] == ("3x32x32", 11_172_170)


def test_describe_models_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    describe_models()
    assert torch.equal(torch.rand(1), expected)


def test_resnet_entry_builds_exactly_the_seed_resnet():
    options = {"depth": 14, "widths": (8, 16), "dropout": 0.2, "init": "skipinit"}
    torch.manual_seed(0)
    built = build_builtin_model(
        "resnet", num_classes=3, in_channels=2, norm="gn", norm_options={"groups": 2}, **options
    )
    torch.manual_seed(0)
    direct = resnet("gn", num_classes=3, in_channels=2, norm_options={"groups": 2}, **options)
    assert repr(built) == repr(direct)
    for (name, a), (_, b) in zip(
        built.state_dict().items(), direct.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56", "preact_resnet18"])
def test_cifar_models_take_norm_options_and_dropout(name):
    model = build_builtin_model(
        name, num_classes=5, in_channels=3, norm="gn", norm_options={"groups": 4}, dropout=0.1
    )
    groups = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert groups and all(m.num_groups == 4 for m in groups)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.1 for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_unknown_model_lists_names():
    with pytest.raises(NormlabError, match="unknown model 'resnet18'; valid names: resnet, "):
        build_builtin_model("resnet18", num_classes=10, in_channels=3, norm="bn")


def test_unknown_option_is_named():
    with pytest.raises(NormlabError, match="'resnet20' does not take option 'depth'; it takes: "):
        build_builtin_model("resnet20", num_classes=10, in_channels=3, norm="bn", depth=20)


def test_register_model(restore_registry):
    def tiny(*, num_classes, in_channels, norm, norm_options, hidden=4):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.Linear(hidden, num_classes))

    register_model(ModelEntry("tiny", tiny, "a tiny MLP", "1x4x4"))
    model = build_builtin_model("tiny", num_classes=3, in_channels=1, norm="bn", hidden=6)
    assert model[2].in_features == 6 and "tiny" in model_names()
    with pytest.raises(NormlabError, match="'tiny' is already registered"):
        register_model(ModelEntry("tiny", tiny, "again", "1x4x4"))
    register_model(ModelEntry("tiny", tiny, "again", "1x4x4"), replace=True)
    assert MODELS["tiny"].description == "again"
    with pytest.raises(NormlabError, match="must not contain ':'"):
        register_model(ModelEntry("pkg:tiny", tiny, "", "1x4x4"))
    with pytest.raises(NormlabError, match="input shape '32x32' is not 'CxHxW'"):
        register_model(ModelEntry("flat", tiny, "", "32x32"))
    assert "flat" not in model_names()
