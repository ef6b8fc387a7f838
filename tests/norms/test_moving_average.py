"""``mabn``: Moving Average Batch Normalization (norms/moving_average.py)."""

from __future__ import annotations

import pytest
import torch

from normlab.norms import MovingAverageBatchNorm, NormlabError, make_norm, pack_norm

# float64; the layer and the reference evaluate the same sums in other orders: rounding only.
TOLERANCE = 1e-10
EPS = 1e-5


def _randomize(layer: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(1.0 + 0.3 * torch.randn(layer.weight.shape, generator=generator))
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    return layer


class PaperMABN:
    """Yan et al. 2020, Algorithm 1, step by step with Python lists for the moving averages."""

    def __init__(self, gamma, beta, window, momentum, warmup, renorm, r_max):
        self.gamma, self.beta = gamma.view(1, -1, 1, 1), beta.view(1, -1, 1, 1)
        self.window, self.momentum = window, momentum
        self.warmup, self.renorm, self.r_max = warmup, renorm, r_max
        self.chi_history, self.psi_history = [], []
        self.chi_ema = torch.ones_like(gamma)
        self.t = 0

    def step(self, x, upstream):
        """Forward output, input gradient, gamma and beta gradients for one training step."""
        self.t += 1
        chi_batch = (x * x).mean(dim=(0, 2, 3))
        self.chi_history.append(chi_batch)
        use_window = self.t > self.window and self.t >= self.warmup
        if use_window:  # SMAS over the last `window` iterations
            chi_bar = torch.stack(self.chi_history[-self.window :]).mean(dim=0)
        else:
            chi_bar = chi_batch
        if self.t <= max(self.renorm, self.warmup):
            r = torch.ones_like(chi_bar)
        else:
            r = torch.sqrt(chi_bar + EPS) / torch.sqrt(self.chi_ema + EPS)
            r = r.clamp(1 / self.r_max, self.r_max)
        self.chi_ema = (1 - self.momentum) * self.chi_ema + self.momentum * chi_bar
        sigma = torch.sqrt(chi_bar + EPS).view(1, -1, 1, 1)
        r = r.view(1, -1, 1, 1)
        z = x / sigma
        y = self.gamma * r * z + self.beta
        # Backward: g = dL/dz; Psi_B = mean(g z); its SMAS replaces it.
        g = upstream * self.gamma * r
        psi_batch = (g * z).mean(dim=(0, 2, 3))
        self.psi_history.append(psi_batch)
        if use_window:
            psi_bar = torch.stack(self.psi_history[-self.window :]).mean(dim=0)
        else:
            psi_bar = psi_batch
        grad_x = (g - z * psi_bar.view(1, -1, 1, 1)) / sigma
        grad_gamma = (upstream * r * z).sum(dim=(0, 2, 3))
        grad_beta = upstream.sum(dim=(0, 2, 3))
        return y, grad_x, grad_gamma, grad_beta

    def evaluate(self, x):
        return self.gamma * x / torch.sqrt(self.chi_ema + EPS).view(1, -1, 1, 1) + self.beta


def test_training_and_inference_match_the_papers_equations() -> None:
    """Nine steps cross warm-up (current statistics), the window and the clipped renormalization
    (r_max 1.2 is reached: the batches' scales change from step to step)."""
    options = dict(window=3, momentum=0.3, warmup_steps=2, renorm_steps=4, r_max=1.2)
    layer = _randomize(make_norm("mabn", 3, **options).double())
    paper = PaperMABN(
        layer.weight.detach().clone(),
        layer.bias.detach().clone(),
        window=3,
        momentum=0.3,
        warmup=2,
        renorm=4,
        r_max=1.2,
    )
    for step in range(9):
        x = (torch.randn(2, 3, 4, 4, dtype=torch.float64) * (1 + step % 3) + 0.5).requires_grad_()
        upstream = torch.randn(2, 3, 4, 4, dtype=torch.float64)
        layer.zero_grad()
        out = layer(x)
        out.backward(upstream)
        y, grad_x, grad_gamma, grad_beta = paper.step(x.detach(), upstream)
        torch.testing.assert_close(out, y, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(x.grad, grad_x, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(layer.weight.grad, grad_gamma, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(layer.bias.grad, grad_beta, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(layer.running_var, paper.chi_ema, atol=TOLERANCE, rtol=0)
    layer.eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), paper.evaluate(x), atol=TOLERANCE, rtol=0)


def test_during_warmup_the_backward_is_the_exact_gradient() -> None:
    """With the current batch's chi_B and Psi_B, MABN's backward is the true gradient of
    ``gamma * x / sqrt(mean(x^2) + eps) + beta`` (the moving averages are what change it)."""
    layer = _randomize(make_norm("mabn", 3, warmup_steps=10).double())
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    upstream = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    layer(x).backward(upstream)
    direct = y / torch.sqrt((y * y).mean(dim=(0, 2, 3), keepdim=True) + EPS)
    direct = direct * layer.weight.view(1, -1, 1, 1) + layer.bias.view(1, -1, 1, 1)
    direct.backward(upstream)
    torch.testing.assert_close(x.grad, y.grad, atol=TOLERANCE, rtol=0)


def test_the_moving_average_backward_differs_from_the_batch_gradient() -> None:
    layer = make_norm("mabn", 2, window=2, warmup_steps=0).double()
    grads = []
    for seed in range(3):
        x = torch.randn(
            2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
        )
        x.requires_grad_()
        layer(x).square().sum().backward()
        grads.append(x.grad)
    # Step 3 averages Psi over steps 2 and 3: no longer the gradient of step 3's forward alone.
    x3 = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x3.requires_grad_()
    fresh = make_norm("mabn", 2, window=2, warmup_steps=0).double()
    fresh(x3).square().sum().backward()  # step 1 of a fresh layer: the exact gradient
    assert not torch.allclose(grads[2], x3.grad, atol=1e-6)


def test_packed_layer_equals_its_runs() -> None:
    """K = 2 runs stacked along channels: the same outputs, gradients and buffers (channel)."""
    options = dict(window=2, warmup_steps=1, renorm_steps=2, momentum=0.2)
    runs = [_randomize(make_norm("mabn", 3, **options).double(), seed) for seed in (0, 1)]
    packed = pack_norm("channel", runs)
    assert isinstance(packed, MovingAverageBatchNorm) and packed.num_features == 6
    for _ in range(5):
        inputs = [torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in runs]
        upstream = [torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in runs]
        separate = [layer(x) for layer, x in zip(runs, inputs, strict=True)]
        for out, u in zip(separate, upstream, strict=True):
            out.backward(u)
        together = packed(torch.cat(inputs, dim=1))
        together.backward(torch.cat(upstream, dim=1))
        torch.testing.assert_close(together, torch.cat(separate, dim=1), atol=TOLERANCE, rtol=0)
    for name in ("weight", "bias"):
        expected = torch.cat([getattr(layer, name).grad for layer in runs])
        torch.testing.assert_close(getattr(packed, name).grad, expected, atol=TOLERANCE, rtol=0)
    for name in ("running_var", "square_mean_window", "grad_window"):
        expected = torch.cat([getattr(layer, name) for layer in runs])
        torch.testing.assert_close(getattr(packed, name), expected, atol=TOLERANCE, rtol=0)


def test_defaults_are_the_papers() -> None:
    layer = make_norm("mabn", 4)
    assert (layer.window, layer.momentum, layer.warmup_steps) == (16, 0.02, 100)
    assert (layer.renorm_steps, layer.r_max) == (1000, 5.0)


@pytest.mark.parametrize(
    "options, key",
    [({"window": 0}, "window"), ({"momentum": 1.5}, "momentum"), ({"r_max": 0.5}, "r_max")],
)
def test_invalid_options_are_named(options: dict, key: str) -> None:
    with pytest.raises(NormlabError, match=key):
        make_norm("mabn", 4, **options)
