"""``brn``: Batch Renormalization (norms/renorm.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from normlab.norms import BatchRenorm, NormlabError, make_norm, set_renormalization

# float64; same formulas evaluated in NumPy and torch: rounding only (~1e-15 relative).
TOLERANCE = 1e-10
EPS = 1e-5


def _with_affine(layer: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    return layer


@pytest.mark.parametrize("options", [{}, {"r_max": 1.0, "d_max": 0.0, "warmup_steps": 0}])
def test_without_corrections_brn_is_bn_in_training(options: dict) -> None:
    """r_max = 1, d_max = 0 (explicitly, or during the warm-up) gives r = 1, d = 0: plain BN."""
    brn = _with_affine(make_norm("brn", 3, **options).double())
    bn = _with_affine(make_norm("bn", 3).double())
    for step in range(3):
        x = (torch.randn(6, 3, 4, 4, dtype=torch.float64) * (step + 1) + step).requires_grad_()
        y = x.detach().clone().requires_grad_()
        out_brn, out_bn = brn(x), bn(y)
        torch.testing.assert_close(out_brn, out_bn, atol=TOLERANCE, rtol=0)
        weights = torch.randn_like(out_bn)
        (out_brn * weights).sum().backward()
        (out_bn * weights).sum().backward()
        torch.testing.assert_close(x.grad, y.grad, atol=TOLERANCE, rtol=0)
    for name in ("weight", "bias"):
        grad_brn, grad_bn = getattr(brn, name).grad, getattr(bn, name).grad
        torch.testing.assert_close(grad_brn, grad_bn, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(brn.running_mean, bn.running_mean, atol=TOLERANCE, rtol=0)
    assert int(brn.step) == 3


def _numpy_brn(x, gamma, beta, running_mean, running_var, r_max, d_max, momentum):
    values = x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
    mean, batch_std = values.mean(axis=1), np.sqrt(values.var(axis=1) + EPS)
    running_std = np.sqrt(running_var + EPS)
    r = np.clip(batch_std / running_std, 1.0 / r_max, r_max)
    d = np.clip((mean - running_mean) / running_std, -d_max, d_max)

    def channel(v):
        return v[None, :, None, None]

    x_hat = (x - channel(mean)) / channel(batch_std) * channel(r) + channel(d)
    new_mean = running_mean + momentum * (mean - running_mean)
    new_std = running_std + momentum * (batch_std - running_std)
    return channel(gamma) * x_hat + channel(beta), new_mean, new_std**2 - EPS, r, d


def test_training_matches_the_paper_formula() -> None:
    layer = BatchRenorm(4, r_max=2.0, d_max=0.5, warmup_steps=0, relax_steps=0, d_relax_steps=0)
    layer = _with_affine(layer.double())
    running_mean = np.array([0.0, 1.0, -2.0, 0.3])
    running_var = np.array([1.0, 0.1, 9.0, 1.2])
    with torch.no_grad():
        layer.running_mean.copy_(torch.from_numpy(running_mean))
        layer.running_var.copy_(torch.from_numpy(running_var))
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64) * 1.5 + 0.2
    gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    expected, new_mean, new_var, r, d = _numpy_brn(
        x.numpy(), gamma, beta, running_mean, running_var, 2.0, 0.5, 0.1
    )
    # the chosen statistics exercise clipped and unclipped r and d
    assert (np.abs(r - 1) > 1e-3).all() and (r == 2.0).any() and (r < 2.0).any()
    assert (np.abs(d) == 0.5).any() and (np.abs(d) < 0.5).any()
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, atol=TOLERANCE)
    np.testing.assert_allclose(layer.running_mean.numpy(), new_mean, atol=TOLERANCE)
    np.testing.assert_allclose(layer.running_var.numpy(), new_var, atol=TOLERANCE)


def test_r_and_d_carry_no_gradient() -> None:
    layer = BatchRenorm(3, r_max=3.0, d_max=5.0, warmup_steps=0, relax_steps=0, d_relax_steps=0)
    layer = _with_affine(layer.double())
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.5, -0.5, 0.0]))
        layer.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
        running_std = torch.sqrt(layer.running_var + EPS)
        running_mean = layer.running_mean.clone()
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    (layer(x) * weights).sum().backward()
    # reference: r and d computed once and plugged in as constants
    y = x.detach().clone().requires_grad_()
    variance, mean = torch.var_mean(y, dim=(0, 2, 3), correction=0)
    std = torch.sqrt(variance + EPS)
    r = (std / running_std).detach().clamp(1 / 3, 3).view(1, -1, 1, 1)
    d = ((mean - running_mean) / running_std).detach().clamp(-5, 5).view(1, -1, 1, 1)
    x_hat = (y - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1) * r + d
    out = x_hat * layer.weight.detach().view(1, -1, 1, 1) + layer.bias.detach().view(1, -1, 1, 1)
    (out * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad, atol=TOLERANCE, rtol=0)


def test_schedule_warmup_then_linear_relaxation() -> None:
    layer = BatchRenorm(2, warmup_steps=10, relax_steps=20, d_relax_steps=10)
    assert layer.clip_bounds(0) == (1.0, 0.0)
    assert layer.clip_bounds(10) == (1.0, 0.0)
    assert layer.clip_bounds(15) == pytest.approx((1.5, 2.5))
    assert layer.clip_bounds(20) == pytest.approx((2.0, 5.0))
    assert layer.clip_bounds(30) == pytest.approx((3.0, 5.0))
    assert layer.clip_bounds(10_000) == pytest.approx((3.0, 5.0))
    paper = make_norm("brn", 2)  # defaults: the paper's 5k warm-up, r_max 3 at 40k, d_max 5 at 25k
    assert paper.clip_bounds(5_000) == (1.0, 0.0)
    assert paper.clip_bounds(25_000) == pytest.approx((1 + 2 * 20 / 35, 5.0))
    assert paper.clip_bounds(40_000) == pytest.approx((3.0, 5.0))


def test_step_counter_counts_training_steps_and_is_saved() -> None:
    layer = make_norm("brn", 2)
    for _ in range(3):
        layer(torch.randn(4, 2, 2, 2))
    layer.eval()(torch.randn(4, 2, 2, 2))
    assert int(layer.step) == 3
    restored = make_norm("brn", 2)
    restored.load_state_dict(layer.state_dict())
    assert int(restored.step) == 3


def test_eval_is_bn_with_running_statistics() -> None:
    brn, bn = make_norm("brn", 3).double(), make_norm("bn", 3).double()
    brn(torch.randn(4, 3, 2, 2, dtype=torch.float64) + 1)
    bn.load_state_dict(brn.state_dict(), strict=False)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(brn.eval()(x), bn.eval()(x), atol=TOLERANCE, rtol=0)
    assert isinstance(brn, _BatchNorm)


def _past_warmup_with_stale_statistics() -> BatchRenorm:
    """A brn whose r and d are both active and far from 1 and 0 (momentum 0: they stay so)."""
    options = {"warmup_steps": 0, "relax_steps": 0, "d_relax_steps": 0, "momentum": 0.0}
    layer = _with_affine(BatchRenorm(3, **options).double())
    with torch.no_grad():
        layer.running_mean.fill_(4.0)
        layer.running_var.fill_(0.25)
    return layer


def test_renormalization_off_is_bn_in_training() -> None:
    """Off, the training output is BN's with batch statistics, whatever the running ones."""
    layer = _past_warmup_with_stale_statistics()
    x = torch.randn(6, 3, 4, 4, dtype=torch.float64) * 2.0 + 1.0
    bn = F.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)
    corrected = layer(x)
    assert (corrected - bn).abs().max() > 1.0  # the setup exercises r and d
    assert set_renormalization(layer, False) == {layer: True}
    torch.testing.assert_close(layer(x), bn, atol=TOLERANCE, rtol=0)
    assert set_renormalization(nn.Sequential(layer), True) == {layer: False}
    torch.testing.assert_close(layer(x), corrected, atol=TOLERANCE, rtol=0)
    assert set_renormalization(nn.ReLU(), False) == {}


@pytest.mark.parametrize(
    "options", [{"r_max": 0.5}, {"d_max": -1.0}, {"warmup_steps": -1}, {"relax_steps": 1.5}]
)
def test_invalid_options(options: dict) -> None:
    with pytest.raises(NormlabError, match="brn"):
        make_norm("brn", 2, **options)


def test_gradcheck(check_gradients) -> None:
    # In training during the warm-up (r = 1, d = 0 exactly) and in inference. Outside the
    # warm-up the analytic gradient deliberately ignores r's and d's dependence on x (stop
    # gradient), which test_r_and_d_carry_no_gradient checks instead.
    assert check_gradients(make_norm("brn", 3), torch.randn(4, 3, 2, 2))
    assert check_gradients(make_norm("brn", 3).eval(), torch.randn(4, 3, 2, 2))
