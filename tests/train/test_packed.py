"""Packed training equals training the runs one by one (within float32 rounding).

Tolerance: not bitwise. A grouped convolution, a batched matmul and a K*C-channel norm reduce
in other orders than K separate kernels, so gradients agree to about 1e-6 relative (float32
rounding), and SGD carries such differences forward over a few steps without amplifying them
much. Parameters whose true gradient is 0 (a convolution bias right before a norm that removes
its mean) get rounding noise of either sign; AdamW divides by its running RMS, which turns noise
into steps of about lr, so AdamW runs are compared on the metrics and with a looser tolerance
on the weights that have a true gradient.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from normlab.errors import NormlabError
from normlab.norms import norm_entry, norm_names
from normlab.train import (
    RunConfig,
    build_model,
    build_optimizer,
    build_scheduler,
    train_run,
)
from normlab.train.packed import can_pack, pack_key, train_packed
from normlab.train.packed_model import PackedModel
from normlab.train.packed_optim import PackedOptimizer

PACKABLE = [name for name in norm_names() if norm_entry(name).packing is not None]
NORM_OPTIONS = {
    # Two groups: with the default (G = C at these widths) the last stage normalizes 4 values
    # per group, chaotic enough that rounding grows past any useful tolerance within an epoch.
    "gn": {"groups": 2},
    "gn_ws": {"groups": 2},
    "bgn": {"groups": 2},
    "evonorm_s0": {"groups": 2},
    "gbn": {"virtual_batch_size": 4},
    "brn": {"warmup_steps": 2, "relax_steps": 4, "d_relax_steps": 4},
}
LEARNING_RATES = {
    # InstanceNorm over the last stage's 2x2 positions divides by the spread of 4 values: at
    # lr 0.1 (the pack's largest) rounding differences reach 1e-2 relative within 12 steps,
    # at 0.02 about 1e-4.
    "in": 0.01,
}


def pack_of(config: RunConfig) -> list[RunConfig]:
    """Four runs that share a pack and differ in everything a pack allows."""
    return [
        config.replace(seed=0),
        config.replace(seed=1, lr=config.lr / 2, weight_decay=0.0, dropout=0.2),
        config.replace(seed=2, momentum=0.5, norm_weight_decay=False, dropout=0.1),
        config.replace(seed=3, lr=config.lr * 2, weight_decay=1e-3, schedule="constant"),
    ]


def alone_and_packed(configs, data, tmp_path):
    paths = [tmp_path / f"packed{k}.pt" for k in range(len(configs))]
    packed = train_packed(configs, data, weights_paths=paths)
    alone = []
    for k, config in enumerate(configs):
        alone.append(train_run(config, data, weights_path=tmp_path / f"alone{k}.pt"))
    return alone, packed, paths


def assert_near(mine, theirs, where, rel=0.0, abs=0.0):
    """``mine`` within ``max(rel * |theirs|, abs)`` of ``theirs``; the failure says by how much
    and where."""
    difference = math.fabs(mine - theirs)
    allowed = max(rel * math.fabs(theirs), abs)
    assert difference <= allowed, (
        f"{where}: packed {mine!r} vs alone {theirs!r}, difference {difference:.3g} "
        f"(allowed {allowed:.3g})"
    )


def assert_same_metrics(alone, packed, rel=2e-3, accuracy_abs=0.051):
    assert packed.run_id == alone.run_id and packed.status == alone.status
    assert packed.steps == alone.steps and packed.error == alone.error
    assert len(packed.epochs) == len(alone.epochs)
    for mine, theirs in zip(packed.epochs, alone.epochs, strict=True):
        where = f"run {alone.run_id}, epoch {theirs.epoch}"
        assert mine.epoch == theirs.epoch
        assert_near(mine.lr, theirs.lr, f"{where}, lr", rel=1e-12)
        assert_near(mine.train_loss, theirs.train_loss, f"{where}, train_loss", rel=rel)
        # Accuracies count examples: one example near the decision boundary may flip.
        assert_near(mine.train_acc, theirs.train_acc, f"{where}, train_acc", abs=accuracy_abs)
        assert_near(mine.val_acc, theirs.val_acc, f"{where}, val_acc", abs=accuracy_abs)
    if alone.status == "done":
        where = f"run {alone.run_id}"
        assert_near(packed.test_acc, alone.test_acc, f"{where}, test_acc", abs=accuracy_abs)
        assert_near(
            packed.test_acc_batch_stats,
            alone.test_acc_batch_stats,
            f"{where}, test_acc_batch_stats",
            abs=accuracy_abs,
        )
        assert packed.wall_time > 0 and packed.images_per_sec > 0


def assert_same_weights(path_a, path_b, rtol=1e-3, atol=1e-4):
    a = torch.load(path_a, weights_only=True)
    b = torch.load(path_b, weights_only=True)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(
            a[name],
            b[name],
            rtol=rtol,
            atol=atol,
            msg=lambda message, name=name: f"{name}: {message}",
        )


@pytest.fixture
def short(tiny_config):
    return tiny_config.replace(steps=12)


def test_initial_weights_equal_each_run_built_alone(tiny_config, tiny_data):
    configs = pack_of(tiny_config)
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, tiny_data))
    packed = PackedModel(models, "channel")
    for k, config in enumerate(configs):
        torch.manual_seed(config.seed)
        alone = build_model(config, tiny_data).state_dict()
        target = build_model(config.replace(seed=99), tiny_data)
        packed.unpack_into(k, target)
        for name, tensor in target.state_dict().items():
            assert torch.equal(tensor, alone[name]), name


@pytest.mark.parametrize("norm", PACKABLE)
def test_packed_sgd_equals_runs_alone_for_every_packable_norm(norm, short, tiny_data, tmp_path):
    config = short.replace(
        norm=norm, norm_options=NORM_OPTIONS.get(norm, {}), lr=LEARNING_RATES.get(norm, short.lr)
    )
    configs = pack_of(config)
    alone, packed, paths = alone_and_packed(configs, tiny_data, tmp_path)
    for k in range(len(configs)):
        assert_same_metrics(alone[k], packed[k])
        assert_same_weights(tmp_path / f"alone{k}.pt", paths[k])


@pytest.mark.parametrize("norm", ["bn", "ln", "none"])
def test_packed_adamw_equals_runs_alone(norm, short, tiny_data, tmp_path):
    config = short.replace(norm=norm, optimizer="adamw", lr=3e-3)
    configs = pack_of(config)
    alone, packed, _ = alone_and_packed(configs, tiny_data, tmp_path)
    for k in range(len(configs)):
        assert_same_metrics(alone[k], packed[k], rel=1e-2, accuracy_abs=0.101)


def test_two_epochs_with_dropout_match_alone(tiny_config, tiny_data, tmp_path):
    configs = pack_of(tiny_config.replace(norm="bn", dropout_position="after_norm"))
    alone, packed, paths = alone_and_packed(configs, tiny_data, tmp_path)
    for k in range(len(configs)):
        assert_same_metrics(alone[k], packed[k])
        assert_same_weights(tmp_path / f"alone{k}.pt", paths[k])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_diverging_member_leaves_the_others_their_own_results(
    optimizer, short, tiny_data, tmp_path
):
    config = short.replace(norm="bn", optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3)
    configs = pack_of(config)
    configs[1] = configs[1].replace(lr=1e4, schedule="constant", norm="bn")
    alone, packed, paths = alone_and_packed(configs, tiny_data, tmp_path)
    assert alone[1].status == packed[1].status == "diverged"
    assert packed[1].error == alone[1].error and packed[1].steps == alone[1].steps
    for k in (0, 2, 3):
        assert_same_metrics(alone[k], packed[k], rel=1e-2, accuracy_abs=0.101)
        if optimizer == "sgd":
            assert_same_weights(tmp_path / f"alone{k}.pt", paths[k])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_packed_optimizer_is_torch_optimizer_per_slice(optimizer):
    # Float64 so that the comparison sees algorithm differences, not rounding.
    torch.manual_seed(0)
    configs = [
        RunConfig(optimizer=optimizer, lr=0.1, momentum=0.9, weight_decay=5e-4),
        RunConfig(optimizer=optimizer, lr=0.03, momentum=0.5, weight_decay=0.0),
        RunConfig(
            optimizer=optimizer,
            lr=0.2,
            momentum=0.0 if optimizer == "sgd" else 0.8,
            weight_decay=1e-2,
            norm_weight_decay=False,
            schedule="constant",
        ),
    ]
    count, steps = len(configs), 5
    weight = torch.randn(count * 3, 2, dtype=torch.float64)
    vector = torch.randn(count * 3, dtype=torch.float64)
    packed_params = [torch.nn.Parameter(weight.clone()), torch.nn.Parameter(vector.clone())]
    packed = PackedOptimizer(packed_params, [True, False], configs, steps)
    alone_params, alone_optimizers, schedulers = [], [], []
    for k, config in enumerate(configs):
        params = [
            torch.nn.Parameter(weight[3 * k : 3 * k + 3].clone()),
            torch.nn.Parameter(vector[3 * k : 3 * k + 3].clone()),
        ]
        module = torch.nn.Module()
        module.weight, module.vector = params
        opt = build_optimizer(module, config)
        alone_params.append(params)
        alone_optimizers.append(opt)
        schedulers.append(build_scheduler(opt, config, steps))
    for _step in range(steps):
        grads = [torch.randn_like(p) for p in packed_params]
        for parameter, grad in zip(packed_params, grads, strict=True):
            parameter.grad = grad.clone()
        packed.step()
        for k in range(count):
            for parameter, grad in zip(alone_params[k], grads, strict=True):
                parameter.grad = grad[3 * k : 3 * k + 3].clone()
            alone_optimizers[k].step()
            schedulers[k].step()
        for k in range(count):
            torch.testing.assert_close(
                packed_params[0].detach()[3 * k : 3 * k + 3],
                alone_params[k][0].detach(),
                rtol=1e-12,
                atol=1e-14,
            )
            torch.testing.assert_close(
                packed_params[1].detach()[3 * k : 3 * k + 3],
                alone_params[k][1].detach(),
                rtol=1e-12,
                atol=1e-14,
            )


def test_dropout_masks_do_not_depend_on_the_global_stream(tiny_config, tiny_data):
    config = tiny_config.replace(dropout=0.3, steps=3)
    first = train_run(config, tiny_data)
    torch.manual_seed(12345)
    torch.rand(100)
    second = train_run(config, tiny_data)
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]


# -- pack keys -----------------------------------------------------------------------------


def test_runs_differing_only_in_per_run_fields_share_a_key(tiny_config):
    keys = {pack_key(config) for config in pack_of(tiny_config)}
    assert len(keys) == 1 and None not in keys


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 4},
        {"norm": "gn"},
        {"widths": (4, 8, 16)},
        {"optimizer": "adamw"},
        {"epochs": 3},
        {"sampler": "balanced"},
        {"norm_options": {"eps": 1e-3}},
    ],
)
def test_runs_differing_in_shared_fields_get_different_keys(change, tiny_config):
    assert pack_key(tiny_config) != pack_key(tiny_config.replace(**change))


def test_bn_momentum_splits_packs_only_where_it_reaches_the_norm(tiny_config):
    assert pack_key(tiny_config) != pack_key(tiny_config.replace(bn_momentum=0.3))
    gn = tiny_config.replace(norm="gn")
    assert pack_key(gn) == pack_key(gn.replace(bn_momentum=0.3))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"init": "skipinit"}, "init='skipinit'"),
        ({"agc_clip": 0.1}, "agc_clip"),
        ({"norm": "frn", "norm_options": {"learnable_eps": True}}, "eps_learned"),
    ],
)
def test_configs_that_cannot_pack_say_why(change, reason, tiny_config):
    ok, why = can_pack(tiny_config.replace(**change))
    assert not ok and reason in why
    assert pack_key(tiny_config.replace(**change)) is None


def test_incompatible_runs_are_refused_as_one_pack(tiny_config, tiny_data):
    with pytest.raises(NormlabError, match="cannot share a pack"):
        train_packed([tiny_config, tiny_config.replace(batch_size=4)], tiny_data)


def test_cross_entropy_per_run_is_the_runs_mean_loss():
    # The packed loss layout: logits (K, N, O) -> K mean losses, one per run.
    logits = torch.randn(3, 5, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 5))
    losses = F.cross_entropy(logits.reshape(15, 4), target.reshape(-1), reduction="none")
    per_run = losses.view(3, 5).mean(dim=1)
    for k in range(3):
        assert per_run[k].item() == pytest.approx(F.cross_entropy(logits[k], target[k]).item())
