import pytest
import torch
from torch import nn

from normlab.diagnostics import global_gradient_norm as reexported
from normlab.train.gradients import global_gradient_norm


def test_global_gradient_norm_matches_concatenation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    model(torch.randn(5, 3)).square().sum().backward()
    flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert global_gradient_norm(model) == pytest.approx(float(flat.norm()), rel=1e-6)
    assert global_gradient_norm(nn.Linear(2, 2)) == 0.0
    assert reexported is global_gradient_norm
