"""swap_norm, freeze_bn and recalibrate_bn on arbitrary models (surgery.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import normlab
from normlab.models import resnet
from normlab.norm_tail import NormWithTail
from normlab.norms import FrozenBatchNorm, NoNorm, NormlabError, make_norm
from normlab.surgery import SwapRecord, freeze_bn, recalibrate_bn, swap_norm

# float64 where values are compared; population statistics over a few thousand values agree
# with NumPy to ~1e-14, so 1e-10 is a safe bound that still catches a wrong weighting (~1e-2).
TOLERANCE = 1e-10


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class Custom(nn.Module):
    """A user container holding its norm as a plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Mixed(nn.Module):
    """BatchNorm1d and 2d in Sequential, ModuleDict, ModuleList and a custom container."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.BatchNorm2d(8)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), shared, nn.ReLU(), Custom())
        self.branches = nn.ModuleDict(
            {"left": nn.Sequential(nn.Conv2d(8, 8, 1), shared), "right": nn.BatchNorm2d(8)}
        )
        self.head = nn.ModuleList([nn.Linear(8, 12), nn.BatchNorm1d(12), nn.Linear(12, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(x)
        out = self.branches["left"](out) + self.branches["right"](out)
        out = out.mean(dim=(2, 3))
        for layer in self.head:
            out = layer(out)
        return out


def _randomize_batch_norms(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                module.weight.normal_()
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)


def test_swap_to_gn_in_nested_containers() -> None:
    model = Mixed()
    _randomize_batch_norms(model)
    old_weight = model.features[3].bn.weight.detach().clone()
    report: list[SwapRecord] = []
    swapped = swap_norm(model, "gn", groups=4, report=report)
    assert swapped is model
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    assert isinstance(model.features[1], nn.GroupNorm) and model.features[1].num_groups == 4
    assert isinstance(model.features[3].bn, nn.GroupNorm)
    assert isinstance(model.branches["right"], nn.GroupNorm)
    assert isinstance(model.head[1], nn.GroupNorm) and model.head[1].num_channels == 12
    assert model.features[1] is model.branches["left"][1]  # shared stays shared
    torch.testing.assert_close(model.features[3].bn.weight.detach(), old_weight)
    names = [record.name for record in report]
    assert names == ["features.1", "features.3.bn", "branches.right", "head.1"]
    assert {r.old_type for r in report} == {"BatchNorm2d", "BatchNorm1d"}
    assert all(r.new_type == "GroupNorm" for r in report)
    assert report[0].carried == ("weight", "bias")
    assert set(report[0].dropped) == {"running_mean", "running_var", "num_batches_tracked"}
    model(torch.randn(2, 3, 6, 6)).sum().backward()


def test_swap_logs_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="normlab.surgery"):
        swap_norm(Mixed(), "ln")
    assert "replaced 3 BatchNorm2d, 1 BatchNorm1d by 'ln'" in caplog.text


def test_swap_to_frozen_bn_keeps_inference_outputs() -> None:
    model = Mixed()
    _randomize_batch_norms(model)
    x = torch.randn(3, 3, 6, 6)
    expected = model.eval()(x)
    swap_norm(model.train(), "frozen_bn")
    assert all(isinstance(m, FrozenBatchNorm) for m in model.modules() if isinstance(m, _BatchNorm))
    torch.testing.assert_close(model(x), expected)


def test_swap_keeps_dtype_and_training_mode() -> None:
    model = Mixed().double().eval()
    swap_norm(model, "bgn", groups=2)
    layer = model.branches["right"]
    assert layer.weight.dtype == torch.float64 and layer.running_mean.dtype == torch.float64
    assert not layer.training
    model(torch.randn(2, 3, 4, 4, dtype=torch.float64))


@pytest.mark.parametrize("name", ["gn", "gbn", "frn", "evonorm_s0", "none", "in"])
def test_swap_on_normlab_resnet(name: str) -> None:
    model = resnet("bn", depth=6, widths=(8, 16))
    swap_norm(model, name)
    assert not any(type(m).__name__ == "BatchNorm" for m in model.modules())
    out = model(torch.randn(2, 1, 8, 8))
    out.sum().backward()
    assert out.shape == (2, 10)


def test_swap_to_none_survives_zero_init_residual() -> None:
    """torchvision's zero_init_residual touches ``bn2.weight`` behind an ``is not None`` check."""
    model = resnet("bn", depth=8, widths=(8,))
    swap_norm(model, "none")
    for module in model.modules():
        if hasattr(module, "norm2"):
            assert isinstance(module.norm2, NoNorm)
            if module.norm2.weight is not None:
                nn.init.constant_(module.norm2.weight, 0)
    assert (
        sum(p.numel() for m in model.modules() if isinstance(m, NoNorm) for p in m.parameters())
        == 0
    )
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_refused_swap_leaves_model_unchanged() -> None:
    model = nn.Sequential(nn.BatchNorm2d(12), nn.Sequential(nn.BatchNorm2d(8)))
    before = list(model.modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        NormlabError, match=r"1\.0 \(BatchNorm2d, 8 channels\).*groups=3.*unchanged"
    ):
        swap_norm(model, "gn", groups=3)  # divides 12, not 8: the first layer must survive
    assert list(model.modules()) == before
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_swap_refuses_gn_ws_and_unknown_names() -> None:
    model = Mixed()
    with pytest.raises(NormlabError, match="weight-standardized"):
        swap_norm(model, "gn_ws")
    with pytest.raises(NormlabError, match="valid names"):
        swap_norm(model, "groupnorm")
    assert isinstance(model.branches["right"], nn.BatchNorm2d)


def test_swap_of_a_bare_batch_norm_returns_the_replacement() -> None:
    replacement = swap_norm(nn.BatchNorm1d(4), "ln")
    assert type(replacement).__name__ == "ChannelLayerNorm"


def test_public_api_reexports() -> None:
    assert normlab.swap_norm is swap_norm
    assert normlab.freeze_bn is freeze_bn
    assert normlab.recalibrate_bn is recalibrate_bn


def test_freeze_bn_fixes_statistics_and_affine() -> None:
    model = resnet("bn_keras", depth=4, widths=(8,))
    _randomize_batch_norms(model)
    x = torch.randn(4, 1, 8, 8)
    expected = model.eval()(x)
    report: list[SwapRecord] = []
    freeze_bn(model.train(), report=report)
    assert len(report) == 3
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm)]
    assert len(frozen) == 3 and all(m.eps == pytest.approx(1e-3) for m in frozen)
    torch.testing.assert_close(model(x), expected)  # training mode, running statistics
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert freeze_bn(model) is model  # already frozen: nothing to do


def test_freeze_bn_can_keep_affine_trainable() -> None:
    model = freeze_bn(Mixed(), freeze_affine=False)
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm)]
    assert frozen and all(p.requires_grad for m in frozen for p in m.parameters())


def test_freeze_bn_refuses_layers_without_running_statistics() -> None:
    model = nn.Sequential(nn.BatchNorm2d(4), nn.BatchNorm2d(4, track_running_stats=False))
    with pytest.raises(NormlabError, match="track_running_stats=False.*unchanged"):
        freeze_bn(model)
    assert type(model[0]) is nn.BatchNorm2d


class Small(nn.Module):
    """conv -> dropout -> BN2d -> ReLU -> pool -> linear -> BN1d -> linear."""

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.dropout = nn.Dropout(0.5)
        self.bn2d = nn.BatchNorm2d(4, momentum=momentum)
        self.fc = nn.Linear(4, 5)
        self.bn1d = nn.BatchNorm1d(5, momentum=momentum)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn2d(self.dropout(self.conv(x))))
        return self.out(self.bn1d(self.fc(hidden.mean(dim=(2, 3)))))


def _inputs_seen(model: Small, batches: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Each BN's input over all batches, with BN normalizing by batch statistics and no dropout."""
    seen: dict[str, list[np.ndarray]] = {"bn2d": [], "bn1d": []}
    with torch.no_grad():
        for x in batches:
            conv = model.conv(x)
            seen["bn2d"].append(conv.numpy())
            hidden = nn.functional.batch_norm(
                conv, None, None, model.bn2d.weight, model.bn2d.bias, True, 0.0, model.bn2d.eps
            )
            seen["bn1d"].append(model.fc(torch.relu(hidden).mean(dim=(2, 3))).numpy())
    return {name: np.concatenate(values) for name, values in seen.items()}


def _population(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    per_channel = np.moveaxis(values, 1, 0).reshape(values.shape[1], -1)
    return per_channel.mean(axis=1), per_channel.var(axis=1)  # population (biased) variance


def test_recalibrate_gives_exact_population_statistics() -> None:
    model = Small().double().train()
    data = torch.randn(23, 2, 5, 5, dtype=torch.float64) * 3.0 + 1.0
    sizes = [5, 7, 3, 8]  # uneven: statistics must be weighted by batch size
    batches = list(torch.split(data, sizes))
    labels = [torch.zeros(len(b)) for b in batches]
    tracked = int(model.bn2d.num_batches_tracked)
    recalibrate_bn(model, list(zip(batches, labels, strict=True)))
    for name, values in _inputs_seen(model, batches).items():
        mean, variance = _population(values)
        layer = getattr(model, name)
        np.testing.assert_allclose(layer.running_mean.numpy(), mean, atol=TOLERANCE)
        np.testing.assert_allclose(layer.running_var.numpy(), variance, atol=TOLERANCE)
    # everything else restored: flags, momenta, counters
    assert model.training and model.dropout.training and model.bn2d.training
    assert model.bn2d.momentum == 0.1 and model.bn1d.momentum == 0.1
    assert int(model.bn2d.num_batches_tracked) == tracked


def test_recalibrate_accepts_plain_tensors_and_limits_batches() -> None:
    model = Small().double().eval()
    batches = [torch.randn(4, 2, 3, 3, dtype=torch.float64) + i for i in range(5)]
    recalibrate_bn(model, iter(batches), num_batches=2)
    mean, variance = _population(_inputs_seen(model, batches[:2])["bn2d"])
    np.testing.assert_allclose(model.bn2d.running_mean.numpy(), mean, atol=TOLERANCE)
    np.testing.assert_allclose(model.bn2d.running_var.numpy(), variance, atol=TOLERANCE)
    assert not model.training and not model.bn2d.training


def test_recalibrate_beats_the_ema_after_short_training() -> None:
    """The EMA lags behind the weights; PreciseBN's statistics are those of the final model."""
    model = Small(momentum=0.9).double()  # high momentum: the EMA follows the last batches
    data = torch.randn(64, 2, 5, 5, dtype=torch.float64) * 2.0 + 0.5
    targets = torch.randint(0, 3, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for step in range(12):
        index = torch.randperm(64)[:8]
        loss = nn.functional.cross_entropy(model(data[index]), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        del step
    batches = list(torch.split(data, 8))
    truth = {name: _population(v) for name, v in _inputs_seen(model, batches).items()}

    def distance() -> float:
        total = 0.0
        for name, (mean, variance) in truth.items():
            layer = getattr(model, name)
            total += np.abs(layer.running_mean.detach().numpy() - mean).sum()
            total += np.abs(layer.running_var.detach().numpy() - variance).sum()
        return total

    ema_distance = distance()
    recalibrate_bn(model, batches)
    assert distance() < 1e-9 < 1e-3 < ema_distance


def test_recalibrate_restores_other_state_and_skips_frozen() -> None:
    model = nn.Sequential(
        make_norm("brn", 3), make_norm("frozen_bn", 3), make_norm("evonorm_b0", 3), nn.ReLU()
    )
    frozen_state = {k: v.clone() for k, v in model[1].state_dict().items()}
    evonorm_var = model[2].running_var.clone()
    recalibrate_bn(model, [torch.randn(4, 3, 2, 2) + 2.0 for _ in range(3)])
    assert int(model[0].step) == 0  # the pass is not a training step
    assert model[0].running_mean.abs().min() > 1.0  # recalibrated to the data's mean ~2
    for key, value in model[1].state_dict().items():
        torch.testing.assert_close(value, frozen_state[key])
    torch.testing.assert_close(model[2].running_var, evonorm_var)


def test_recalibrate_brn_normalizes_by_batch_statistics() -> None:
    """brn past its warm-up gets the statistics its BN twin gets: during the pass r and d are
    off, so each layer's statistics are measured with its predecessors normalizing by batch
    statistics, not by the running statistics being replaced. The flag is restored."""
    options = {"warmup_steps": 0, "relax_steps": 0, "d_relax_steps": 0}

    def network(norm: str) -> nn.Sequential:
        torch.manual_seed(0)
        extra = options if norm == "brn" else {}
        layers = [nn.Conv2d(2, 4, 3, padding=1), make_norm(norm, 4, **extra), nn.ReLU()]
        layers += [nn.Conv2d(4, 4, 3), make_norm(norm, 4, **extra)]
        return nn.Sequential(*layers).double()

    renorm, twin = network("brn"), network("bn")
    with torch.no_grad():
        for layer in (renorm[1], renorm[4]):
            layer.running_mean.fill_(2.0)  # stale: r and d far from 1 and 0
            layer.running_var.fill_(0.2)
    batches = [torch.randn(4, 2, 5, 5, dtype=torch.float64) * 2.0 + 1.0 for _ in range(3)]
    recalibrate_bn(renorm, batches)
    recalibrate_bn(twin, batches)
    for ours, reference in ((renorm[1], twin[1]), (renorm[4], twin[4])):
        torch.testing.assert_close(
            ours.running_mean, reference.running_mean, atol=TOLERANCE, rtol=0
        )
        torch.testing.assert_close(ours.running_var, reference.running_var, atol=TOLERANCE, rtol=0)
        assert ours.renormalize


def test_recalibrate_restores_everything_when_the_batches_fail() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 1), make_norm("brn", 3)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def batches():
        yield torch.randn(4, 2, 3, 3)
        raise RuntimeError("the data loader failed")

    with pytest.raises(RuntimeError, match="data loader"):
        recalibrate_bn(model, batches())
    assert model[1].renormalize and model.training and model[1].momentum == 0.1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_recalibrate_without_batches_is_refused_and_changes_nothing() -> None:
    model = Small()
    before = model.bn2d.running_var.clone()
    with pytest.raises(NormlabError, match="no batches"):
        recalibrate_bn(model, [])
    torch.testing.assert_close(model.bn2d.running_var, before)
    with pytest.raises(NormlabError, match="num_batches"):
        recalibrate_bn(model, [torch.randn(2, 2, 3, 3)], num_batches=0)


def test_recalibrate_refuses_a_batch_of_one_with_the_cause_and_the_fix() -> None:
    # 1x1 activations: torch's own BN fails on one example with an internal message.
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.randn(4, 2, 3, 3), torch.randn(1, 2, 3, 3)]
    with pytest.raises(NormlabError, match=r"batch 2 holds one example.*at least 2 examples"):
        recalibrate_bn(model, batches)
    assert model.training and model[1].momentum == 0.1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_frozen_model_scripts_and_gives_the_same_output() -> None:
    model = freeze_bn(Small()).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(4, 2, 5, 5)
    # The same kernels on the same input: equal to the bit.
    torch.testing.assert_close(scripted(x), model(x), atol=0, rtol=0)
    with pytest.raises(torch.jit.Error, match=r"expects \(N, C, ...\) input"):
        torch.jit.script(model.bn2d)(torch.randn(3))


# --- BatchNorm subclasses that do more than normalize -------------------------------------------


class BatchNormAct2d(nn.BatchNorm2d):
    """A look-alike of timm's BatchNormAct2d: batch norm, then its ``drop`` and ``act`` children
    (timm's forward, a copy of BatchNorm2d.forward followed by the two children)."""

    def __init__(
        self, num_features: int, act_layer: type[nn.Module] = nn.SiLU, drop: float = 0.0
    ) -> None:
        super().__init__(num_features)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        batch_statistics = self.training or (self.running_mean is None and self.running_var is None)
        x = torch.nn.functional.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            batch_statistics,
            factor,
            self.eps,
        )
        x = self.drop(x)
        return self.act(x)


class ScaledBatchNorm(nn.BatchNorm2d):
    """Does something besides normalizing, with no child to show for it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


class ActFirstBatchNorm(BatchNormAct2d):
    """Has an ``act`` child but applies it before normalizing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.BatchNorm2d.forward(self, self.act(x))


class AlwaysRunningBatchNorm(BatchNormAct2d):
    """Normalizes with running statistics in training too: equal to BN + act in eval mode only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )
        return self.act(self.drop(x))


class TaggedBatchNorm(nn.BatchNorm2d):
    """A subclass that only adds an attribute: a plain BN in behaviour."""

    tag = "mine"


class EfficientNetLike(nn.Module):
    """Convolutions followed by BatchNormAct2d layers (SiLU, ReLU with dropout) and a plain BN."""

    def __init__(self, layer: type[nn.BatchNorm2d] = BatchNormAct2d) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = layer(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = BatchNormAct2d(8, act_layer=nn.ReLU, drop=0.2)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.bn3 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(x))))))
        return self.head(out.mean(dim=(2, 3)))


def _activations(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.SiLU, nn.ReLU)) for m in model.modules())


@pytest.mark.parametrize("target", ["gn", "ln_chw", "none", "frozen_bn", "gbn", "bn"])
def test_swap_keeps_what_a_batch_norm_act_layer_does_after_normalizing(target: str) -> None:
    model = EfficientNetLike()
    _randomize_batch_norms(model)
    activations = _activations(model)
    report: list[SwapRecord] = []
    swap_norm(model, target, report=report)
    assert _activations(model) == activations == 2
    assert isinstance(model.bn1, NormWithTail) and isinstance(model.bn1.act, nn.SiLU)
    assert isinstance(model.bn2.drop, nn.Dropout) and model.bn2.drop.p == 0.2
    assert not isinstance(model.bn3, NormWithTail)  # a plain BN is swapped as before
    assert [record.tail for record in report] == [
        ("drop (Identity)", "act (SiLU)"),
        ("drop (Dropout)", "act (ReLU)"),
        (),
    ]
    assert report[0].new_type == type(model.bn1.norm).__name__


def test_swapped_batch_norm_act_computes_norm_then_tail() -> None:
    model = EfficientNetLike().double()
    _randomize_batch_norms(model)
    model.eval()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    before = model(x)
    freeze_bn(model)  # frozen_bn with the same statistics: the same function in eval mode
    assert isinstance(model.bn1.norm, FrozenBatchNorm) and not model.bn1.norm.weight.requires_grad
    # float64, same operations: equal to rounding.
    torch.testing.assert_close(model(x), before, rtol=0, atol=1e-12)
    swap_norm(model, "gn", groups=2)
    features = model.conv1(x)
    expected = torch.nn.functional.silu(model.bn1.norm(features))
    torch.testing.assert_close(model.bn1(features), expected, rtol=0, atol=1e-12)
    assert isinstance(model.bn1.norm, nn.GroupNorm)


def test_swapped_tail_keeps_meaningful_state_dict_keys() -> None:
    model = EfficientNetLike(layer=lambda c: BatchNormAct2d(c, act_layer=nn.PReLU))
    slope = model.bn1.act.weight.detach().clone()
    swap_norm(model, "gn", groups=2)
    state = model.state_dict()
    assert {"bn1.norm.weight", "bn1.norm.bias", "bn1.act.weight"} <= set(state)
    assert torch.equal(state["bn1.act.weight"], slope)


def test_swap_of_a_bare_batch_norm_act_returns_the_wrapper() -> None:
    layer = BatchNormAct2d(4)
    swapped = swap_norm(layer, "ln_chw")
    assert isinstance(swapped, NormWithTail) and swapped.act is layer.act


@pytest.mark.parametrize("layer", [ScaledBatchNorm, ActFirstBatchNorm, AlwaysRunningBatchNorm])
def test_swap_refuses_a_subclass_that_does_something_else(layer: type[nn.BatchNorm2d]) -> None:
    model = EfficientNetLike(layer=layer)
    _randomize_batch_norms(model)
    modules = dict(model.named_modules())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NormlabError) as caught:
        swap_norm(model, "gn", groups=2)
    message = str(caught.value)
    assert f"bn1 ({layer.__name__}, 8 channels)" in message
    assert f"cannot know what {layer.__name__} does beyond normalizing" in message
    assert "left unchanged" in message and "\n" not in message
    assert dict(model.named_modules()) == modules
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_refusal_names_the_expected_forward_and_freeze_refuses_too() -> None:
    with pytest.raises(NormlabError, match="its forward is not batch norm, then drop, then act"):
        freeze_bn(EfficientNetLike(layer=ActFirstBatchNorm))


def test_probe_failure_is_a_refusal() -> None:
    class Broken(nn.BatchNorm2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom\nsecond line")

    with pytest.raises(NormlabError, match="forward failed on a probe input: RuntimeError: boom"):
        swap_norm(nn.Sequential(Broken(3)), "gn", groups=1)


def test_subclass_with_no_children_and_plain_forward_is_swapped_as_before() -> None:
    model = EfficientNetLike(layer=TaggedBatchNorm)
    report: list[SwapRecord] = []
    swap_norm(model, "gn", groups=2, report=report)
    assert isinstance(model.bn1, nn.GroupNorm)
    assert report[0].old_type == "TaggedBatchNorm" and report[0].tail == ()


def test_probe_leaves_the_layer_and_the_global_rng_alone() -> None:
    model = EfficientNetLike()
    _randomize_batch_norms(model)
    layer = model.bn1
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    swap_norm(model, "frozen_bn")
    assert torch.equal(torch.rand(1), expected)
    assert all(torch.equal(v, state[k]) for k, v in layer.state_dict().items())
    assert layer.training  # the old layer's mode was not changed by the probe


def test_swap_logs_the_kept_tail(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="normlab.surgery"):
        swap_norm(EfficientNetLike(), "gn", groups=2)
    assert "kept what they do after normalizing: drop (Dropout), act (ReLU)" in caplog.text
