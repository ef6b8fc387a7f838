"""The registry: every name builds, trains, and tells the truth about batch statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.norms import NormlabError, make_norm, norm_entry, norm_names, uses_batch_statistics

ALL_NAMES = norm_names()


def test_names_include_the_zoo() -> None:
    expected = {"bn", "bn_keras", "none", "ln", "ln_chw", "gn", "in", "gbn", "brn", "frozen_bn"}
    expected |= {"frn", "evonorm_s0", "evonorm_b0", "gn_ws", "bgn"}
    assert expected <= set(ALL_NAMES)
    assert len(ALL_NAMES) == len(set(ALL_NAMES))


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("batch_size", [2, 8])
def test_every_norm_builds_and_trains(name: str, batch_size: int) -> None:
    layer = make_norm(name, 16)
    assert isinstance(layer, nn.Module)
    layer.train()
    x = torch.randn(batch_size, 16, 8, 8, requires_grad=True)
    out = layer(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for parameter in layer.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
    layer.eval()
    with torch.no_grad():
        assert torch.isfinite(layer(x)).all()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_batch_of_one_in_training(name: str) -> None:
    layer = make_norm(name, 16).train()
    x = torch.randn(1, 16, 8, 8)
    if uses_batch_statistics(name):
        with pytest.raises(NormlabError, match="batch of one"):
            layer(x)
        layer.eval()  # inference on one sample is fine: running statistics
    assert layer(x).shape == x.shape


@pytest.mark.parametrize("name", ALL_NAMES)
def test_batch_statistics_flag_is_truthful(name: str) -> None:
    """In training, sample 0's output depends on the other samples iff the flag says so."""
    layer = make_norm(name, 16).train()
    x = torch.randn(4, 16, 4, 4)
    changed = x.clone()
    changed[1:] = 3.0 * changed[1:] + 1.0
    with torch.no_grad():
        first = layer(x)[0]
        second = layer(changed)[0]
    depends = not torch.allclose(first, second, atol=1e-6)
    assert depends == norm_entry(name).batch_statistics


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(NormlabError) as error:
        make_norm("batchnorm", 16)
    message = str(error.value)
    assert "'batchnorm'" in message
    for name in ALL_NAMES:
        assert name in message


def test_unknown_option_is_named() -> None:
    with pytest.raises(NormlabError, match="does not take option.*virtual"):
        make_norm("bn", 16, virtual_batch_size=4)


def test_non_positive_channels_refused() -> None:
    with pytest.raises(NormlabError, match="num_channels"):
        make_norm("gn", 0)


def test_entries_cite_their_source() -> None:
    for name in ALL_NAMES:
        assert norm_entry(name).citation.strip()
    assert norm_entry("gn_ws").weight_standardized_conv
    assert not any(norm_entry(n).weight_standardized_conv for n in ALL_NAMES if n != "gn_ws")


def _shifted(batch_size: int = 4) -> torch.Tensor:
    # Mean 2, std 3: batch statistics far from the initial running ones (0, 1).
    return (2.0 + 3.0 * torch.randn(batch_size, 16, 4, 4)).double()


@pytest.mark.parametrize("name", ALL_NAMES)
def test_running_momentum_flag_is_truthful(name: str) -> None:
    """The flag is set iff the layer takes ``momentum`` and a training step moves its running
    statistics; a layer without it keeps every floating-point buffer in training."""
    if norm_entry(name).running_momentum:
        layer = make_norm(name, 16, momentum=0.5).double().train()
        assert layer.momentum == 0.5
    else:
        layer = make_norm(name, 16).double().train()
    before = {k: v.clone() for k, v in layer.named_buffers() if v.is_floating_point()}
    with torch.no_grad():
        layer(_shifted())
    moved = any(not v.equal(before[k]) for k, v in layer.named_buffers() if k in before)
    assert moved == norm_entry(name).running_momentum


@pytest.mark.parametrize("name", ALL_NAMES)
def test_train_equals_eval_flag_is_truthful(name: str) -> None:
    """After a few training steps (running statistics moved), a training-mode forward equals the
    eval-mode forward iff the flag says so; float64, so 1e-12 separates rounding from a change."""
    layer = make_norm(name, 16).double().train()
    with torch.no_grad():
        for _ in range(3):
            layer(_shifted())
        x = _shifted()
        trained = layer(x)
        evaluated = layer.eval()(x)
    same = torch.allclose(trained, evaluated, rtol=0.0, atol=1e-12)
    assert same == norm_entry(name).train_equals_eval
    assert not (norm_entry(name).train_equals_eval and norm_entry(name).batch_statistics)
