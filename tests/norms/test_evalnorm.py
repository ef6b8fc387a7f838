"""``evalnorm``: EvalNorm's corrected evaluation statistics (norms/evalnorm.py)."""

from __future__ import annotations

import pytest
import torch

from normlab.norms import EvalNorm, NormlabError, make_norm, pack_norm

# float64; the same formulas in another order: rounding only.
TOLERANCE = 1e-10
EPS = 1e-5


def _trained(name: str, batch_size: int = 4, **options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = make_norm(name, 3, **options).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        for step in range(5):
            layer(2.0 + 3.0 * torch.randn(batch_size, 3, 4, 4, dtype=torch.float64) + step)
    return layer.eval()


def paper_evaluation(layer: torch.nn.Module, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Singh & Shrivastava 2019: the sample's statistics and the population's, mixed."""
    mu = layer.running_mean.view(1, -1, 1, 1)
    sigma2 = layer.running_var.view(1, -1, 1, 1)
    mu_x = x.mean(dim=(2, 3), keepdim=True)
    sigma2_x = ((x - mu_x) ** 2).mean(dim=(2, 3), keepdim=True)
    mu_hat = alpha * mu_x + (1 - alpha) * mu
    sigma2_hat = alpha * sigma2_x + (1 - alpha) * sigma2 + alpha * (1 - alpha) * (mu_x - mu) ** 2
    gamma, beta = layer.weight.view(1, -1, 1, 1), layer.bias.view(1, -1, 1, 1)
    return gamma * (x - mu_hat) / torch.sqrt(sigma2_hat + EPS) + beta


def test_training_is_bn() -> None:
    evalnorm, bn = _trained("evalnorm").train(), _trained("bn").train()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(evalnorm(x), bn(x), atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(evalnorm.running_var, bn.running_var, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("batch_size", [2, 8])
def test_evaluation_uses_the_rule_of_thumb_alpha(batch_size: int) -> None:
    layer = _trained("evalnorm", batch_size=batch_size)
    assert layer.sample_weight() == pytest.approx(1.0 / batch_size)
    x = 1.0 + 2.0 * torch.randn(3, 3, 4, 4, dtype=torch.float64)
    expected = paper_evaluation(layer, x, 1.0 / batch_size)
    torch.testing.assert_close(layer(x), expected, atol=TOLERANCE, rtol=0)


def test_the_mixture_is_the_pooled_moments() -> None:
    """alpha = m / (m + n): the statistics of the sample's values pooled with n population values
    whose mean and variance are the running ones (the variance of a two-part mixture)."""
    layer = make_norm("evalnorm", 1, alpha=0.25).double().eval()
    population = torch.randn(48, dtype=torch.float64) * 2 + 1
    with torch.no_grad():
        layer.running_mean.fill_(population.mean())
        layer.running_var.fill_(population.var(correction=0))
    x = 0.5 + torch.randn(1, 1, 4, 4, dtype=torch.float64)
    pooled = torch.cat([x.flatten(), population])  # 16 of 64 values: weight 0.25
    expected = (x - pooled.mean()) / torch.sqrt(pooled.var(correction=0) + EPS)
    torch.testing.assert_close(layer(x), expected, atol=TOLERANCE, rtol=0)


def test_alpha_zero_is_bn_and_alpha_one_is_instance_statistics() -> None:
    layer, bn = _trained("evalnorm"), _trained("bn")
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    layer.alpha = 0.0
    torch.testing.assert_close(layer(x), bn(x), atol=TOLERANCE, rtol=0)
    layer.alpha = 1.0
    mean = x.mean(dim=(2, 3), keepdim=True)
    variance = x.var(dim=(2, 3), correction=0, keepdim=True)
    expected = (x - mean) / torch.sqrt(variance + EPS) * layer.weight.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected + layer.bias.view(1, -1, 1, 1), atol=1e-9, rtol=0)


def test_batch_size_option_for_a_layer_trained_elsewhere() -> None:
    fresh = make_norm("evalnorm", 3).eval()
    assert fresh.sample_weight() == 0.0  # no training batch size known: BN's evaluation
    assert make_norm("evalnorm", 3, batch_size=4).sample_weight() == 0.25
    assert make_norm("evalnorm", 3, batch_size=4, alpha=0.1).sample_weight() == 0.1
    with pytest.raises(NormlabError, match="alpha"):
        make_norm("evalnorm", 3, alpha=1.5)
    with pytest.raises(NormlabError, match="batch_size"):
        make_norm("evalnorm", 3, batch_size=0)


def test_packed_layer_equals_its_runs() -> None:
    runs = [_trained("evalnorm", batch_size=2) for _ in range(2)]
    with torch.no_grad():
        runs[1].running_mean.add_(1.0)
    packed = pack_norm("channel", runs).eval()
    assert isinstance(packed, EvalNorm) and packed.num_features == 6
    inputs = [torch.randn(2, 3, 4, 4, dtype=torch.float64) for _ in runs]
    separate = torch.cat([layer(x) for layer, x in zip(runs, inputs, strict=True)], dim=1)
    torch.testing.assert_close(packed(torch.cat(inputs, dim=1)), separate, atol=TOLERANCE, rtol=0)
