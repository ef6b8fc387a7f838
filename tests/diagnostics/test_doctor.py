"""The doctor on small models, each planted with one problem, and on healthy ones."""

import warnings

import pytest
import torch
from torch import nn

from normlab.diagnostics import (
    WeightDecaySetting,
    examine,
    fix_checkpoint,
    format_findings,
)
from normlab.errors import NormlabError
from normlab.norms import FrozenBatchNorm
from normlab.surgery import recalibrate_bn
from normlab.train import parameter_groups
from normlab.train.evaluate import chunks

from .helpers import assert_state_unchanged, small_cnn, state_snapshot, train_briefly

BATCH = 32


def codes(findings) -> set[str]:
    return {finding.code for finding in findings}


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(256) % 4
    pattern = torch.randn(4, 1, 8, 8, generator=generator)
    x = pattern[y] + 0.8 * torch.randn(256, 1, 8, 8, generator=generator)
    return x, y


def healthy_bn(data) -> nn.Module:
    """Trained at batch 32, running statistics replaced by exact ones (PreciseBN)."""
    x, y = data
    torch.manual_seed(0)
    model = train_briefly(small_cnn(), x, y, batch_size=BATCH, steps=30)
    recalibrate_bn(model, (x[a:b] for a, b in chunks(len(x), BATCH)))
    return model


def test_healthy_models_have_no_findings(data):
    x, y = data
    model = healthy_bn(data)
    snapshot = state_snapshot(model)
    findings = examine(model, x, y, BATCH, num_train_examples=1024)
    assert findings == [], format_findings(findings)
    assert_state_unchanged(model, snapshot)
    assert format_findings([]) == "no findings"
    torch.manual_seed(0)
    group_norm = train_briefly(small_cnn(nn.GroupNorm), x, y, batch_size=4, steps=30)
    optimizer = torch.optim.SGD(parameter_groups(group_norm, 5e-4, False), lr=0.1)
    assert examine(group_norm, x, y, 4, grad_accumulation=8, optimizer=optimizer) == []


def test_noisy_batch_statistics(data):
    x, y = data
    # BN after global pooling: one value per example and channel, so at batch 4 the batch mean
    # is off by ~sqrt(2 / (4 pi)) = 0.4 sigma, twice the threshold.
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(8),
        nn.Linear(8, 4),
    )
    findings = examine(model, x, y, 4)
    (noise,) = [f for f in findings if f.code == "bn-batch-noise"]
    assert noise.evidence["noisiest_layers"]["3"] == pytest.approx(0.4, abs=0.08)
    assert not noise.evidence["extrapolated"]
    assert "bn-batch-noise" not in codes(examine(model, x, y, 64))


def test_ema_horizon_longer_than_an_epoch(data):
    x, y = data
    model = healthy_bn(data)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.001
    findings = examine(model, x, y, BATCH, num_train_examples=1024)
    assert codes(findings) == {"ema-horizon"}
    assert findings[0].evidence["steps_per_epoch"] == 32
    assert findings[0].evidence["horizon_steps"] == pytest.approx(1000)


def test_eval_gap_with_stale_statistics_and_checkpoint(data):
    x, y = data
    model = healthy_bn(data)
    stale = {
        name: (torch.zeros_like(v) if "running_mean" in name else torch.ones_like(v))
        if "running" in name
        else v
        for name, v in model.state_dict().items()
    }
    snapshot = state_snapshot(model)
    findings = examine(model, x, y, BATCH, checkpoint_state=stale)
    assert codes(findings) == {"eval-train-gap"}
    evidence = findings[0].evidence
    assert evidence["precise_acc"] - evidence["running_acc"] > 0.2  # PreciseBN recovers it
    assert_state_unchanged(model, snapshot)  # the checkpoint went into a copy
    with pytest.raises(NormlabError, match="checkpoint does not fit"):
        examine(model, x, y, BATCH, checkpoint_state={"nonsense": torch.zeros(1)})


def test_dropout_before_bn(data):
    x, y = data
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.Dropout(0.5),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    model = train_briefly(model, x, y, batch_size=BATCH, steps=30)
    (finding,) = [f for f in examine(model, x, y, BATCH) if f.code == "dropout-before-bn"]
    assert finding.evidence["ratios"]["2"] < 0.75  # keep 0.5, input mean not zero
    assert finding.evidence["dropouts"] == ["1"]


def test_weight_decay_on_norm_scales(data):
    x, y = data
    model = healthy_bn(data)
    decay_all = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=5e-4)
    (finding,) = examine(model, x, y, BATCH, optimizer=decay_all)
    assert finding.code == "weight-decay-on-norm"
    assert finding.evidence["parameters"] == 4  # 2 BN layers x (gamma, beta)
    exempt = torch.optim.SGD(parameter_groups(model, 5e-4, False), lr=0.1)
    assert examine(model, x, y, BATCH, optimizer=exempt) == []
    setting = WeightDecaySetting(weight_decay=5e-4, norm_weight_decay=True)
    assert codes(examine(model, x, y, BATCH, weight_decay_config=setting)) == {
        "weight-decay-on-norm"
    }
    assert examine(model, x, y, BATCH, weight_decay_config=WeightDecaySetting(5e-4, False)) == []


def test_frozen_parameters_with_updating_statistics(data):
    x, y = data
    model = healthy_bn(data).train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.requires_grad_(False)
    findings = examine(model, x, y, BATCH)
    assert codes(findings) == {"frozen-bn-updating"}
    assert findings[0].evidence["in_train_mode_now"] == 2
    fixed = fix_checkpoint(model, x, "freeze_bn")
    assert examine(fixed, x, y, BATCH) == []
    assert isinstance(model[1], nn.BatchNorm2d)  # the input was not touched


def test_gradient_accumulation(data):
    x, y = data
    model = healthy_bn(data)
    findings = examine(model, x, y, 8, grad_accumulation=4)
    (finding,) = [f for f in findings if f.code == "grad-accumulation-bn"]
    evidence = finding.evidence
    assert evidence["effective_batch"] == 32
    assert evidence["mean_error_per_step"] > 1.5 * evidence["mean_error_effective"]


def test_sync_batch_norm_without_process_group(data):
    x, y = data
    model = nn.SyncBatchNorm.convert_sync_batchnorm(healthy_bn(data))
    (finding,) = [f for f in examine(model, x, y, BATCH) if f.code == "sync-bn-inactive"]
    assert finding.evidence["layers"] == 2
    assert finding.evidence["distributed_initialized"] is False


def test_model_failing_at_batch_one(data):
    x, y = data
    model = healthy_bn(data)
    model[8] = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
    # 257 examples in batches of 32: each epoch ends on a batch of one, which fails.
    findings = examine(model, x, y, BATCH, num_train_examples=8 * BATCH + 1)
    (finding,) = [f for f in findings if f.code == "batch-one-failure"]
    assert finding.severity == "error"
    assert finding.evidence["layer"] == "8.1"
    assert finding.evidence["last_batch"] == 1
    assert "Expected more than 1 value" in finding.evidence["error"]
    assert "batch-one-failure" in format_findings([finding])


def to_one_by_one() -> nn.Sequential:
    """A stand-in for ResNet-18 / MobileNet at 32x32: strided stages down to 1x1, BN there."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (8, 8, 16, 16, 16):
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.BatchNorm2d(width)]
        layers.append(nn.ReLU())
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels, 4))


@pytest.mark.parametrize(
    ("batch_size", "num_train_examples", "severity"),
    [(2, 64, "info"), (3, 64, "error"), (1, 64, "error"), (2, None, "info")],
)
def test_batch_one_failure_is_graded_by_what_training_feeds(
    batch_size, num_train_examples, severity
):
    # 1x1 activations: one example gives BN one value per channel, so only a batch of one
    # fails; batches of 2 from 64 examples never leave one (64 mod 3 = 1 does).
    torch.manual_seed(0)
    model = to_one_by_one()
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning reaches the user
        findings = examine(model, x, y, batch_size, num_train_examples=num_train_examples)
    (finding,) = [f for f in findings if f.code == "batch-one-failure"]
    assert finding.severity == severity
    assert finding.evidence["layer"] == "13"


def test_fix_checkpoint_precise_bn_copies(data):
    x, y = data
    model = healthy_bn(data)
    model[1].reset_running_stats()
    snapshot = state_snapshot(model)
    patched = fix_checkpoint(model, x, "precise_bn", batch_size=BATCH)
    assert_state_unchanged(model, snapshot)
    assert not torch.equal(patched[1].running_var, model[1].running_var)
    assert isinstance(fix_checkpoint(model, x, "freeze_bn")[1], FrozenBatchNorm)
    with pytest.raises(NormlabError, match="unknown fix"):
        fix_checkpoint(model, x, "magic")


def test_refuses_bad_arguments(data):
    x, y = data
    with pytest.raises(NormlabError, match="batch_size"):
        examine(nn.Linear(2, 2), x, y, 0)
    with pytest.raises(NormlabError, match="labels"):
        examine(nn.Linear(2, 2), x, y[:3], 2)
