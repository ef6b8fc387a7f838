"""Users' model references (train/model_ref.py): built-ins, module and file factories, norms."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.errors import NormlabError
from normlab.models import build_builtin_model
from normlab.norms import BatchNorm
from normlab.train import build_model_from_ref, check_model_ref, model_takes_norm
from normlab.train.model_ref import resolve_factory

ARGS = {"num_classes": 3, "in_channels": 2}


@pytest.fixture(autouse=True)
def user_models(monkeypatch: pytest.MonkeyPatch):
    # The folder of user_models.py on sys.path, as a user's package would be.
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import user_models

    user_models.CALLS.clear()
    return user_models


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def test_builtin_name_builds_the_registered_model():
    torch.manual_seed(0)
    model = build_model_from_ref("resnet20", norm="gn", norm_options={"groups": 4}, **ARGS)
    torch.manual_seed(0)
    direct = build_builtin_model("resnet20", norm="gn", norm_options={"groups": 4}, **ARGS)
    assert repr(model) == repr(direct)
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), direct.parameters(), strict=True)
    )
    assert model_takes_norm("resnet20")


def test_factory_without_norm_keeps_its_own_batch_norms_for_bn(user_models):
    model = build_model_from_ref("user_models:bn_net", norm="bn", **ARGS)
    assert user_models.CALLS == [ARGS]  # only the arguments it accepts
    layers = batch_norms(model)
    assert len(layers) == 2 and all(type(m) is nn.BatchNorm2d and m.eps == 1e-3 for m in layers)
    assert not model_takes_norm("user_models:bn_net")


@pytest.mark.parametrize("norm, kind", [("gn", nn.GroupNorm), ("frozen_bn", BatchNorm)])
def test_factory_without_norm_is_swapped(norm, kind):
    model = build_model_from_ref("user_models:bn_net", norm=norm, **ARGS)
    assert isinstance(model[1], kind) and isinstance(model[4], kind)
    assert model(torch.randn(2, 2, 5, 5)).shape == (2, 3)


def test_bn_with_options_is_a_swap_to_normlabs_bn():
    model = build_model_from_ref(
        "user_models:bn_net", norm="bn", norm_options={"momentum": 0.3}, **ARGS
    )
    assert all(type(m) is BatchNorm and m.momentum == 0.3 for m in batch_norms(model))


def test_factory_with_norm_builds_it_itself(user_models):
    model = build_model_from_ref(
        "user_models:norm_net", norm="gn", norm_options={"groups": 2}, **ARGS
    )
    assert isinstance(model[1], nn.GroupNorm) and model[1].num_groups == 2
    assert user_models.CALLS[-1]["norm"] == "gn"
    assert model_takes_norm("user_models:norm_net") and model_takes_norm("user_models:kwargs_net")


def test_kwargs_factory_gets_everything(user_models):
    build_model_from_ref("user_models:kwargs_net", norm="ln_chw", **ARGS)
    assert user_models.CALLS[0] == {**ARGS, "norm": "ln_chw", "norm_options": {}}


def test_norm_none_returns_the_factorys_model(user_models):
    model = build_model_from_ref("user_models:norm_net", norm=None, **ARGS)
    # Neither norm nor norm_options was passed: the factory's defaults ("bn", None) built it.
    assert user_models.CALLS[0]["norm_options"] is None and type(model[1]) is BatchNorm
    plain = build_model_from_ref("user_models:plain_net", norm=None, **ARGS)
    assert isinstance(plain[1], nn.LazyLinear)


def test_class_factory_and_options():
    model = build_model_from_ref("user_models:Net", norm="gn", width=6, **ARGS)
    assert isinstance(model.features[1], nn.GroupNorm) and model.features[1].num_channels == 6


def test_file_factory_with_and_without_norm(tmp_path, monkeypatch):
    (tmp_path / "helpers.py").write_text("WIDTH = 5\n")
    (tmp_path / "nets.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass

            from torch import nn

            from helpers import WIDTH  # a sibling file, as when the file runs as a script


            @dataclass
            class Shape:
                width: int = WIDTH


            def plain(num_classes, in_channels):
                width = Shape().width
                return nn.Sequential(
                    nn.Conv2d(in_channels, width, 3), nn.BatchNorm2d(width), nn.Flatten(),
                    nn.LazyLinear(num_classes),
                )


            def normed(num_classes, in_channels, norm):
                return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.GroupNorm(1, 4))
            """
        )
    )
    absolute = build_model_from_ref(f"{tmp_path / 'nets.py'}:plain", norm="gn", **ARGS)
    assert isinstance(absolute[1], nn.GroupNorm) and absolute[1].num_channels == 5
    monkeypatch.chdir(tmp_path)
    relative = build_model_from_ref("nets.py:plain", norm="bn", **ARGS)
    assert type(relative[1]) is nn.BatchNorm2d
    # The same file under both spellings is one module, under a stable name in sys.modules.
    factory = resolve_factory("nets.py:plain")
    assert factory is resolve_factory(f"{tmp_path / 'nets.py'}:plain")
    assert factory.__module__.startswith("normlab_user_model_")
    assert sys.modules[factory.__module__].Shape().width == 5
    assert not model_takes_norm("nets.py:plain") and model_takes_norm("nets.py:normed")
    assert isinstance(build_model_from_ref("nets.py:normed", norm="ln", **ARGS)[1], nn.GroupNorm)


def test_changed_file_is_loaded_again(tmp_path):
    path = tmp_path / "net.py"
    path.write_text("from torch import nn\ndef f(num_classes):\n    return nn.BatchNorm1d(3)\n")
    assert isinstance(build_model_from_ref(f"{path}:f", norm="bn", **ARGS), nn.BatchNorm1d)
    path.write_text("from torch import nn\ndef f(num_classes):\n    return nn.BatchNorm1d(7)\n")
    assert build_model_from_ref(f"{path}:f", norm="bn", **ARGS).num_features == 7


def test_check_model_ref_resolves_without_calling(user_models):
    check_model_ref("resnet56")
    check_model_ref("user_models:broken")  # would raise if called
    assert user_models.CALLS == []


@pytest.mark.parametrize(
    "ref, message",
    [
        ("resnet18", "'resnet18' is neither a built-in model \\(resnet, resnet20"),
        (":factory", "is neither a built-in model"),
        ("user_models:", "is neither a built-in model"),
        ("no_such_package.nets:f", "cannot import no_such_package.nets: ModuleNotFoundError: No "),
        ("user_models:missing", "user_models has no factory 'missing'"),
        ("user_models:NOT_CALLABLE", "'NOT_CALLABLE' in user_models is a int, not a callable"),
        ("missing/nets.py:f", "file not found: .*missing/nets.py"),
        ("models/nets.txt:f", "models/nets.txt is not a .py file"),
    ],
)
def test_bad_references_are_refused_in_one_line(ref, message):
    for call in (
        lambda: check_model_ref(ref),
        lambda: build_model_from_ref(ref, norm="bn", **ARGS),
    ):
        with pytest.raises(NormlabError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "ref, norm, options, message",
    [
        ("user_models:broken", "bn", {}, "the factory raised RuntimeError: out of memory"),
        ("user_models:not_a_model", "bn", {}, "returned a int, not a torch.nn.Module"),
        ("user_models:plain_net", "gn", {}, "has no BatchNorm layer for norm='gn' to replace"),
        ("user_models:plain_net", "bn", {}, "has no BatchNorm layer for norm='bn'"),
        ("user_models:bn_net", "gn", {"depth": 3}, "the factory does not take option 'depth'"),
        ("user_models:bn_net", "gn_ws", {}, "'user_models:bn_net': swap_norm: 'gn_ws' pairs"),
        ("resnet20", "bn", {"depth": 3}, "'resnet20' does not take option 'depth'"),
    ],
)
def test_build_errors_name_the_reference(ref, norm, options, message):
    with pytest.raises(NormlabError, match=message) as caught:
        build_model_from_ref(ref, norm=norm, **ARGS, **options)
    assert f"{ref!r}" in str(caught.value) and "\n" not in str(caught.value)


def test_file_that_fails_to_load_is_refused(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import torch\nraise ValueError('no GPU here')\n")
    with pytest.raises(NormlabError, match="loading .*bad.py raised ValueError: no GPU here"):
        check_model_ref(f"{path}:f")
