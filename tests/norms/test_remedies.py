"""The small-batch remedies for BN (mabn, cbn, cbn_naive, evalnorm) in models, surgery, the CLI
and packed training: what the layer tests do not see."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from normlab import recalibrate_bn, swap_norm
from normlab.cli import cli
from normlab.models import resnet, resnet20
from normlab.norms import CrossIterationBatchNorm, norm_entry, norm_names
from normlab.train import train_run
from normlab.train.packed import train_packed

REMEDIES = ["mabn", "cbn", "cbn_naive", "evalnorm"]
# Short warm-ups so that a few steps reach each method's moving-average / window path.
SHORT = {
    "mabn": {"window": 2, "warmup_steps": 2, "renorm_steps": 3},
    "cbn": {"window": 3, "burnin_steps": 1},
    "cbn_naive": {"window": 3, "burnin_steps": 1},
    "evalnorm": {},
}


def _train(model: torch.nn.Module, steps: int = 4, batch_size: int = 2) -> float:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        x = torch.randn(batch_size, model_channels(model), 16, 16, generator=generator)
        y = torch.randint(0, 10, (batch_size,), generator=generator)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def model_channels(model: torch.nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


@pytest.mark.parametrize("name", REMEDIES)
@pytest.mark.parametrize("build", [resnet, resnet20], ids=["seed_resnet", "resnet20"])
def test_trains_in_the_builtin_resnets(name: str, build) -> None:
    model = build(norm=name, norm_options=SHORT[name])
    loss = _train(model)
    assert torch.isfinite(torch.tensor(loss))
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, model_channels(model), 16, 16))).all()
    layers = [m for m in model.modules() if isinstance(m, CrossIterationBatchNorm)]
    if name == "cbn":  # every norm follows a convolution in both ResNets: all compensated
        assert layers and all(layer.compensated for layer in layers)


@pytest.mark.parametrize("name", REMEDIES)
def test_swap_norm_installs_the_remedy(name: str) -> None:
    model = resnet20()
    swap_norm(model, name, **SHORT[name])
    kinds = {type(m).__name__ for m in model.modules()}
    assert type(norm_entry(name).build(4)).__name__ in kinds
    assert torch.isfinite(torch.tensor(_train(model)))


def test_precise_bn_recalibrates_bn_based_remedies_and_leaves_mabn() -> None:
    """cbn, cbn_naive and evalnorm are BN layers (PreciseBN applies); mabn's running statistic
    is a quadratic mean, not a variance, and it is no ``_BatchNorm``: left alone."""
    for name in REMEDIES:
        model = resnet(norm=name, norm_options=SHORT[name])
        _train(model)
        before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        batches = [torch.randn(8, 1, 16, 16) for _ in range(3)]
        recalibrate_bn(model, batches)
        after = {k: v for k, v in model.state_dict().items() if "running" in k}
        changed = any(not torch.equal(before[k], after[k]) for k in before)
        assert changed == (name != "mabn"), name


def test_list_norms_shows_the_remedies() -> None:
    result = CliRunner().invoke(cli, ["list", "norms"])
    assert result.exit_code == 0
    for name in REMEDIES:
        assert name in result.output


def test_keeps_bn_marks_exactly_the_remedies() -> None:
    kept = {name for name in norm_names() if norm_entry(name).keeps_bn}
    assert kept == {"brn", "gbn", "mabn", "cbn", "cbn_naive", "evalnorm"}


@pytest.mark.parametrize("name", ["mabn", "cbn", "evalnorm"])
def test_packed_training_equals_runs_alone(name: str, tiny_config, tiny_data, tmp_path) -> None:
    """tests/train/test_packed.py's check with warm-ups short enough to reach the windows."""
    config = tiny_config.replace(norm=name, norm_options=SHORT[name], steps=10)
    configs = [config.replace(seed=0), config.replace(seed=1, lr=config.lr / 2)]
    paths = [tmp_path / f"packed{k}.pt" for k in range(2)]
    packed = train_packed(configs, tiny_data, weights_paths=paths)
    for k, run in enumerate(configs):
        alone = train_run(run, tiny_data, weights_path=tmp_path / f"alone{k}.pt")
        assert packed[k].status == alone.status == "done"
        for mine, theirs in zip(packed[k].epochs, alone.epochs, strict=True):
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=2e-3)
        a = torch.load(tmp_path / f"alone{k}.pt", weights_only=True)
        b = torch.load(paths[k], weights_only=True)
        for key in a:
            torch.testing.assert_close(
                a[key],
                b[key],
                rtol=1e-3,
                atol=1e-4,
                msg=lambda message, key=key: f"{key}: {message}",
            )
