"""``cbn`` and ``cbn_naive``: Cross-Iteration Batch Normalization (norms/cross_iteration.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms import CrossIterationBatchNorm, NormlabError, make_norm, pack_norm

# float64; the layer and the reference reach the same values by other routes (a full Jacobian
# against a gradient of a sum, other summation orders): rounding only.
TOLERANCE = 1e-9
EPS = 1e-5


def _conv(seed: int, bias: bool = True) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(2, 3, 3, padding=1, bias=bias).double()


class PaperCBN:
    """Yao et al. 2021, eqs. 6-9, step by step: each iteration's mu, nu and their Jacobians with
    respect to the convolution's weight and bias (taken whole with ``jacobian``, then the rows
    of each channel), compensated to the current weights and pooled."""

    def __init__(self, window: int, compensate: bool = True) -> None:
        self.window, self.compensate = window, compensate
        self.history = []  # newest last: (mu, nu, weight, bias, dmu/dtheta, dnu/dtheta)

    def _statistics(self, x, weight, bias):
        out = F.conv2d(x, weight, bias, padding=1)
        return out.mean(dim=(0, 2, 3)), (out * out).mean(dim=(0, 2, 3))

    def step(self, x, weight, bias):
        """Normalized conv output (before gamma, beta) with gradients through this step only."""
        mu, nu = self._statistics(x, weight, bias)
        jacobians = torch.autograd.functional.jacobian(
            lambda w, b: self._statistics(x, w, b), (weight.detach(), bias.detach())
        )
        channels = torch.arange(weight.shape[0])
        # Channel c's statistics depend on weight row c and bias c only: keep those rows.
        rows = [
            (jacobian_w[channels, channels], jacobian_b[channels, channels])
            for jacobian_w, jacobian_b in jacobians
        ]
        means, squares = [mu], [nu]
        for old_mu, old_nu, old_w, old_b, mu_rows, nu_rows in reversed(self.history):
            change_w, change_b = weight.detach() - old_w, bias.detach() - old_b
            if self.compensate:
                old_mu = old_mu + (mu_rows[0] * change_w).sum(dim=(1, 2, 3)) + mu_rows[1] * change_b
                old_nu = old_nu + (nu_rows[0] * change_w).sum(dim=(1, 2, 3)) + nu_rows[1] * change_b
            means.append(old_mu)
            squares.append(torch.maximum(old_nu, old_mu**2))
        mu_bar = torch.stack(means).mean(dim=0)
        sigma2_bar = torch.stack(squares).mean(dim=0) - mu_bar**2
        self.history.append(
            (mu.detach(), nu.detach(), weight.detach().clone(), bias.detach().clone(), *rows)
        )
        self.history = self.history[-(self.window - 1) :]
        out = F.conv2d(x, weight, bias, padding=1)
        return (out - mu_bar.view(1, -1, 1, 1)) / torch.sqrt(sigma2_bar.view(1, -1, 1, 1) + EPS)


@pytest.mark.parametrize("name, compensate", [("cbn", True), ("cbn_naive", False)])
def test_training_matches_the_papers_equations(name: str, compensate: bool) -> None:
    """Seven steps with the weights moving between steps: outputs and the convolution's weight
    gradients equal the reference's (window of 3, burn-in of one step, which is plain BN)."""
    conv = _conv(0)
    layer = make_norm(name, 3, window=3, burnin_steps=1, affine=False).double()
    paper = PaperCBN(window=3, compensate=compensate)
    generator = torch.Generator().manual_seed(5)
    for step in range(7):
        x = torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=generator)
        upstream = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=generator)
        conv.zero_grad()
        out = layer(conv(x))
        (out * upstream).sum().backward()
        grads = (conv.weight.grad.clone(), conv.bias.grad.clone())
        weight = conv.weight.detach().clone().requires_grad_()
        bias = conv.bias.detach().clone().requires_grad_()
        if step == 0:  # burn-in: BN
            expected = F.batch_norm(F.conv2d(x, weight, bias, padding=1), None, None, training=True)
        else:
            expected = paper.step(x, weight, bias)
        (expected * upstream).sum().backward()
        torch.testing.assert_close(out, expected, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(grads[0], weight.grad, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(grads[1], bias.grad, atol=TOLERANCE, rtol=0)
        assert layer.compensated == (compensate and step > 0)
        with torch.no_grad():  # an optimizer step of sorts
            conv.weight.add_(0.05 * torch.randn(conv.weight.shape, generator=generator))
            conv.bias.add_(0.05 * torch.randn(conv.bias.shape, generator=generator))


def test_the_mean_compensation_is_exact() -> None:
    """mu is linear in the convolution's weights, so its Taylor compensation recovers exactly the
    old batch's mean under the new weights (nu, quadratic, is approximated)."""
    conv = _conv(1)
    layer = make_norm("cbn", 3, window=2, burnin_steps=0).double()
    old_x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    layer(conv(old_x))
    with torch.no_grad():
        conv.weight.add_(0.1 * torch.randn_like(conv.weight))
        conv.bias.add_(0.1)
    history = layer._history
    theta = torch.cat([conv.weight.detach().reshape(3, -1), conv.bias.detach().view(3, 1)], dim=1)
    compensated = history.mean[:, 0] + (
        history.mean_grad[:, 0] * (theta - history.theta[:, 0])
    ).sum(1)
    with torch.no_grad():
        recomputed = conv(old_x).mean(dim=(0, 2, 3))
    torch.testing.assert_close(compensated, recomputed, atol=TOLERANCE, rtol=0)


def test_without_a_preceding_convolution_the_window_is_uncompensated() -> None:
    torch.manual_seed(2)
    inputs = [torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in range(4)]
    cbn = make_norm("cbn", 3, window=3, burnin_steps=0).double()
    naive = make_norm("cbn_naive", 3, window=3, burnin_steps=0).double()
    for x in inputs:
        a = cbn(x.clone().requires_grad_())
        b = naive(x.clone().requires_grad_())
        torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=0)
        assert not cbn.compensated


@pytest.mark.parametrize("name", ["cbn", "cbn_naive"])
def test_burn_in_eval_and_no_grad_are_bn(name: str) -> None:
    """Burn-in steps, gradient-free training steps (PreciseBN's pass) and evaluation are BN's."""
    layer = make_norm(name, 3, window=4, burnin_steps=2).double()
    bn = make_norm("bn", 3).double()
    for step in range(4):
        x = torch.randn(4, 3, 4, 4, dtype=torch.float64) + step
        if step < 2:
            torch.testing.assert_close(layer(x.requires_grad_()), bn(x), atol=TOLERANCE, rtol=0)
        else:
            with torch.no_grad():
                torch.testing.assert_close(layer(x), bn(x), atol=TOLERANCE, rtol=0)
    assert layer._history is None  # nothing pooled yet
    torch.testing.assert_close(layer.running_mean, bn.running_mean, atol=TOLERANCE, rtol=0)
    layer.eval(), bn.eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), bn(x), atol=TOLERANCE, rtol=0)


def test_running_statistics_track_the_current_batch_as_bn() -> None:
    conv = _conv(3, bias=False)
    layer = make_norm("cbn", 3, window=3, burnin_steps=0).double()
    bn = make_norm("bn", 3).double()
    for _ in range(4):
        features = conv(torch.randn(4, 2, 5, 5, dtype=torch.float64))
        layer(features)
        with torch.no_grad():
            bn(features)
    torch.testing.assert_close(layer.running_mean, bn.running_mean, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(layer.running_var, bn.running_var, atol=TOLERANCE, rtol=0)


def test_packed_layer_equals_its_runs() -> None:
    """Two conv + cbn runs against one grouped convolution + the stacked layer (channel)."""
    convs = [_conv(seed) for seed in (4, 5)]
    runs = [make_norm("cbn", 3, window=3, burnin_steps=1).double() for _ in convs]
    packed_conv = nn.Conv2d(4, 6, 3, padding=1, groups=2).double()
    with torch.no_grad():
        packed_conv.weight.copy_(torch.cat([conv.weight for conv in convs]))
        packed_conv.bias.copy_(torch.cat([conv.bias for conv in convs]))
    packed = pack_norm("channel", runs)
    assert isinstance(packed, CrossIterationBatchNorm) and packed.num_features == 6
    generator = torch.Generator().manual_seed(6)
    for _ in range(5):
        inputs = [torch.randn(2, 2, 5, 5, dtype=torch.float64, generator=generator) for _ in runs]
        separate = torch.cat(
            [layer(conv(x)) for layer, conv, x in zip(runs, convs, inputs, strict=True)], dim=1
        )
        together = packed(packed_conv(torch.cat(inputs, dim=1)))
        torch.testing.assert_close(together, separate, atol=TOLERANCE, rtol=0)
        assert packed.compensated == all(layer.compensated for layer in runs)
        delta = 0.05 * torch.randn(packed_conv.weight.shape, generator=generator)
        with torch.no_grad():
            packed_conv.weight.add_(delta)
            for k, conv in enumerate(convs):
                conv.weight.add_(delta[3 * k : 3 * (k + 1)])
    assert packed.compensated


def test_defaults_and_options() -> None:
    layer = make_norm("cbn", 4)
    assert (layer.window, layer.burnin_steps, layer.rho, layer.compensate) == (8, 1000, 1.0, True)
    assert not make_norm("cbn_naive", 4).compensate
    with pytest.raises(NormlabError, match="window"):
        make_norm("cbn", 4, window=0)
    with pytest.raises(NormlabError, match="burnin_steps"):
        make_norm("cbn", 4, burnin_steps=-1)
