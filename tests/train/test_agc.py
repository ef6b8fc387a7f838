"""Adaptive gradient clipping against a direct float64 NumPy implementation of the formula."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import normlab.train.engine as engine
from normlab.errors import NormlabError
from normlab.train import RunConfig, train_run
from normlab.train.agc import AGC_EPS, adaptive_clip_gradients, classifier, unitwise_norm


def agc_reference(weight: np.ndarray, grad: np.ndarray, clipping: float) -> np.ndarray:
    """Brock et al. 2021, Eq. 3, one unit at a time: a row of the weight flattened to
    (outputs, rest), or the whole tensor when it has at most one dimension (the reference's
    unit for biases and scalars)."""
    rows = 1 if weight.ndim <= 1 else weight.shape[0]
    weight_units, grad_units = weight.reshape(rows, -1), grad.reshape(rows, -1)
    clipped = grad_units.copy()
    for unit in range(rows):
        weight_norm = max(math.sqrt(float(np.sum(weight_units[unit] ** 2))), AGC_EPS)
        grad_norm = math.sqrt(float(np.sum(grad_units[unit] ** 2)))
        if grad_norm / weight_norm > clipping:
            clipped[unit] = clipping * weight_norm / grad_norm * grad_units[unit]
    return clipped.reshape(grad.shape)


class Tiny(nn.Module):
    """A convolution, a hidden linear layer, a scalar, and the classifier (registered last)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.hidden = nn.Linear(6, 5)
        self.gain = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(5, 3)


def model_with_gradients(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    model = Tiny().double()
    with torch.no_grad():
        model.conv.weight[0] = 0.0  # a zero-initialized unit: its threshold is lambda * eps
        for parameter in model.parameters():
            # Per-unit gradient scales over four decades, so that some units clip and some not.
            rows = parameter.shape[0] if parameter.ndim > 1 else 1
            scales = torch.logspace(-3, 1, rows, dtype=torch.float64)
            grad = torch.randn_like(parameter).reshape(rows, -1) * scales[:, None]
            parameter.grad = grad.reshape(parameter.shape).clone()
    return model


def test_unitwise_norm_is_per_output_unit_or_whole_vector():
    weight = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    expected = weight.reshape(4, -1).norm(dim=1).reshape(4, 1, 1, 1)
    assert torch.allclose(unitwise_norm(weight), expected)
    bias = torch.randn(4, dtype=torch.float64)
    assert unitwise_norm(bias).shape == () and torch.isclose(unitwise_norm(bias), bias.norm())


@pytest.mark.parametrize("clipping", [0.01, 0.16, 1.0])
def test_matches_numpy_formula_and_leaves_the_classifier_alone(clipping):
    model = model_with_gradients()
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    adaptive_clip_gradients(model, clipping)
    changed = 0
    for name, parameter in model.named_parameters():
        if name.startswith("fc."):
            assert torch.equal(parameter.grad, before[name])  # excluded, even at tiny lambda
            continue
        expected = agc_reference(parameter.detach().numpy(), before[name].numpy(), clipping)
        # float64 throughout; the two differ only in summation order: 1e-12 relative.
        np.testing.assert_allclose(parameter.grad.numpy(), expected, rtol=1e-12, atol=0)
        changed += int(not torch.equal(parameter.grad, before[name]))
    assert changed > 0


def test_some_units_clip_and_some_do_not():
    model = model_with_gradients()
    before = model.conv.weight.grad.clone()
    adaptive_clip_gradients(model, 0.16)
    same = [torch.equal(model.conv.weight.grad[i], before[i]) for i in range(4)]
    assert any(same) and not all(same)


def test_zero_weight_unit_is_clipped_to_lambda_times_eps():
    model = model_with_gradients()
    adaptive_clip_gradients(model, 0.5)
    assert model.conv.weight.grad[0].norm().item() == pytest.approx(0.5 * AGC_EPS, rel=1e-12)


def test_classifier_is_the_last_linear_layer():
    assert classifier(Tiny()) is not None and classifier(Tiny()).out_features == 3
    assert classifier(nn.Conv2d(1, 1, 1)) is None


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_threshold_is_a_clear_error(bad, tiny_config, tiny_data):
    with pytest.raises(NormlabError, match="agc_clip"):
        train_run(tiny_config.replace(agc_clip=bad), tiny_data)


def test_off_by_default_and_off_changes_nothing(monkeypatch, tiny_config, tiny_data):
    assert RunConfig().agc_clip is None

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("AGC ran with agc_clip=None")

    off = tiny_config.replace(steps=6)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "adaptive_clip_gradients", must_not_run)
        baseline = train_run(off, tiny_data)
    # A threshold no gradient reaches is AGC switched on but never clipping: same numbers.
    never_clips = train_run(off.replace(agc_clip=1e12), tiny_data)
    assert [e.train_loss for e in never_clips.epochs] == [e.train_loss for e in baseline.epochs]
    assert never_clips.test_acc == baseline.test_acc
    # A tight threshold clips: the run differs.
    clipped = train_run(off.replace(agc_clip=1e-3), tiny_data)
    assert clipped.epochs[0].train_loss != baseline.epochs[0].train_loss
