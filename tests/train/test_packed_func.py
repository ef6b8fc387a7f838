"""The general packer (``train/packed_func.py``) equals training the runs one by one, in float64.

In float64 the only differences are reduction orders (a grouped convolution against K
convolutions, one batched matmul against K): about 1e-15 relative per step, so results are
compared to 1e-9, where any algorithmic difference (a wrong mask, a mixed statistic, another
run's learning rate) shows by orders of magnitude.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

from normlab.models import ModelEntry, SeededDropout, register_model
from normlab.models.cifar_resnet import cifar_resnet
from normlab.models.dropout import seed_dropout
from normlab.models.registry import MODELS
from normlab.norms import make_norm, norm_entry, norm_names
from normlab.train import RunConfig, build_model, train_run
from normlab.train.model_ref import resolve_factory
from normlab.train.packed import build_packed, can_pack, train_packed
from normlab.train.packed_func import FunctionalPackedModel, PackRefused
from normlab.train.packed_model import PackedModel
from normlab.train.units import train_runs

USER_FILE = Path(__file__).with_name("packed_models.py")
DATA_OPTIONS = {"num_examples": 64, "num_classes": 4, "size": 8, "noise": 0.8}  # data64's
VMAP_PACKABLE = [name for name in norm_names() if norm_entry(name).vmap_problem is None]
NORM_OPTIONS = {
    "gn": {"groups": 2},
    "gn_ws": {"groups": 2},
    "bgn": {"groups": 2},
    "evonorm_s0": {"groups": 2},
    "gbn": {"virtual_batch_size": 2},
    "brn": {"warmup_steps": 1, "relax_steps": 2, "d_relax_steps": 2},
}


def config_for(model: str, **changes) -> RunConfig:
    base = RunConfig(
        model=model, dataset="synthetic", dataset_options=DATA_OPTIONS, batch_size=4, steps=6
    )
    return base.replace(**changes)


def mixed_pack(config: RunConfig) -> list[RunConfig]:
    """Three runs of one pack with their own seeds, learning rates and weight decays."""
    return [
        config.replace(seed=0),
        config.replace(seed=1, lr=config.lr / 2, weight_decay=0.0, norm_weight_decay=False),
        config.replace(seed=2, lr=config.lr * 2, weight_decay=1e-3, momentum=0.5),
    ]


def assert_same_runs(configs, data, tmp_path, rel=1e-9):
    paths = [tmp_path / f"packed{k}.pt" for k in range(len(configs))]
    packed = train_packed(configs, data, weights_paths=paths)
    for k, config in enumerate(configs):
        alone = train_run(config, data, weights_path=tmp_path / f"alone{k}.pt")
        mine = packed[k]
        assert (mine.status, mine.steps, mine.error) == (alone.status, alone.steps, alone.error)
        assert len(mine.epochs) == len(alone.epochs)
        for a, b in zip(mine.epochs, alone.epochs, strict=True):
            assert a.train_loss == pytest.approx(b.train_loss, rel=rel)
            assert (a.train_acc, a.val_acc, a.lr) == (b.train_acc, b.val_acc, b.lr)
        assert (mine.test_acc, mine.test_acc_batch_stats) == (
            alone.test_acc,
            alone.test_acc_batch_stats,
        )
        if alone.status == "done":
            ours = torch.load(paths[k], weights_only=True)
            theirs = torch.load(tmp_path / f"alone{k}.pt", weights_only=True)
            assert ours.keys() == theirs.keys()
            for name in ours:  # parameters and running statistics
                torch.testing.assert_close(ours[name], theirs[name], rtol=rel, atol=1e-12)
    return packed


# -- the mechanism -------------------------------------------------------------------------


def test_vmapped_batch_norm_equals_separate_modules(float64):
    torch.manual_seed(0)
    modules = [nn.BatchNorm2d(3, momentum=0.3) for _ in range(3)]
    for module in modules:
        nn.init.normal_(module.weight)
    template = copy.deepcopy(modules[0])
    weights = torch.stack([m.weight.detach() for m in modules]).requires_grad_()
    biases = torch.stack([m.bias.detach() for m in modules]).requires_grad_()
    means = torch.stack([m.running_mean for m in modules])
    variances = torch.stack([m.running_var for m in modules])
    x = torch.randn(3, 5, 3, 4, 4)

    def one(weight, bias, mean, var, inputs):
        tensors = {"weight": weight, "bias": bias, "running_mean": mean, "running_var": var}
        return functional_call(template, tensors, (inputs,))

    out = vmap(one)(weights, biases, means, variances, x)
    out.square().sum().backward()
    for k, module in enumerate(modules):
        alone = module(x[k])
        alone.square().sum().backward()
        torch.testing.assert_close(out[k], alone, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(weights.grad[k], module.weight.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(biases.grad[k], module.bias.grad, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(means[k], module.running_mean, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(variances[k], module.running_var, rtol=1e-12, atol=1e-14)


def test_vmapped_convolution_is_one_grouped_convolution():
    count = 4
    template = nn.Conv2d(3, 5, 3, padding=1)
    weights = torch.randn(count, 5, 3, 3, 3)
    biases = torch.randn(count, 5)
    x = torch.randn(count, 2, 3, 6, 6)

    def one(weight, bias, inputs):
        return functional_call(template, {"weight": weight, "bias": bias}, (inputs,))

    with torch.profiler.profile(record_shapes=True) as profile:
        out = vmap(one)(weights, biases, x)
    convolutions = [e for e in profile.events() if e.name == "aten::convolution" and e.input_shapes]
    # The profiler records the logical per-run call, then what the batching rule ran: one
    # convolution over the K runs' filters (groups = K), not K convolutions.
    physical = [e.input_shapes[1] for e in convolutions if e.input_shapes[1] != [5, 3, 3, 3]]
    assert physical == [[count * 5, 3, 3, 3]]
    assert [e.input_shapes[0] for e in convolutions][-1] == [2, count * 3, 6, 6]
    for k in range(count):
        alone = torch.nn.functional.conv2d(x[k], weights[k], biases[k], padding=1)
        torch.testing.assert_close(out[k], alone, rtol=1e-5, atol=1e-5)


def test_each_run_draws_the_dropout_masks_it_draws_alone(float64):
    """SeededDropout from the run's generator, plain nn.Dropout from the global stream the
    run's build left: the pack's logits are each run's own, mask for mask."""
    models, states = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 6), SeededDropout(0.3), nn.Dropout(0.5), nn.Linear(6, 2))
        seed_dropout(model, seed)
        models.append(model)
        states.append(torch.get_rng_state())
    packed = FunctionalPackedModel(models, states)
    alone = copy.deepcopy(models)
    seed_dropout_again = [seed_dropout(m, seed) for seed, m in enumerate(alone)]
    assert len(seed_dropout_again) == 3
    x = torch.randn(4, 3 * 6)
    for _ in range(2):  # the streams advance as they do alone
        logits = packed(x)
        for k, model in enumerate(alone):
            torch.set_rng_state(states[k])
            torch.testing.assert_close(logits[k], model(x[:, 6 * k : 6 * k + 6]))
            states[k] = torch.get_rng_state()


def test_random_operations_outside_dropout_are_refused():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x + torch.randn_like(x))

    packed = FunctionalPackedModel([Noisy(), Noisy()])
    with pytest.raises(Exception, match="random numbers in its forward"):
        packed(torch.randn(3, 4))


# -- every model family, packed against alone ----------------------------------------------


@pytest.mark.parametrize(
    ("model", "steps"),
    [("resnet20", 6), ("resnet32", 2), ("preact_resnet18", 1)],
)
def test_builtin_models_pack_exactly(model, steps, float64, data64, tmp_path):
    config = config_for(model, steps=steps, lr=0.05, dropout=0.2)
    configs = mixed_pack(config)[:2] if model != "resnet20" else mixed_pack(config)
    assert can_pack(configs[0]) == (True, "")
    assert_same_runs(configs, data64, tmp_path)


def test_each_model_takes_the_faster_packer(float64, data64):
    def packer(model: str, **changes):
        return type(build_packed(mixed_pack(config_for(model, **changes))[:2], data64)[0])

    assert packer("resnet20") is packer("resnet", widths=(4, 8, 8), depth=8) is PackedModel
    assert packer("preact_resnet18") is FunctionalPackedModel
    assert packer(f"{USER_FILE}:two_branch_net") is FunctionalPackedModel
    saved = dict(MODELS)
    try:  # a built-in name registered again builds another class: the general packer
        mine = resolve_factory(f"{USER_FILE}:two_branch_net")
        register_model(ModelEntry("resnet20", mine, "mine", "1x8x8"), replace=True)
        assert packer("resnet20") is FunctionalPackedModel
    finally:
        MODELS.clear()
        MODELS.update(saved)


@pytest.mark.parametrize("model", ["resnet20", "resnet56", "preact_resnet18", "resnet"])
def test_general_packer_steps_builtin_models_as_alone(model, float64, data64):
    """The CIFAR ResNets and the write-up's ResNet train through the channel packer (faster,
    ``CHANNEL_PACKED_MODELS``), but the general one runs them exactly too: logits, gradients
    and running statistics of one training step with dropout, option-A shortcuts included."""
    configs = mixed_pack(config_for(model, dropout=0.3))[:2]
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, data64))
    alone = copy.deepcopy(models)
    for config, own in zip(configs, alone, strict=True):
        seed_dropout(own, config.seed)
    packed = FunctionalPackedModel(models).train()
    x = data64.x_train[:4].repeat(1, 2, 1, 1)
    packed(x).logsumexp(dim=2).sum().backward()
    logits = packed(x).detach()  # a second step: the dropout streams and statistics advance
    stacked = packed.stacked_parameters() | packed.stacked_buffers()
    for k, own in enumerate(alone):
        own.train()
        own(data64.x_train[:4]).logsumexp(dim=1).sum().backward()
        torch.testing.assert_close(
            logits[k], own(data64.x_train[:4]).detach(), rtol=1e-9, atol=1e-12
        )
        for name, parameter in own.named_parameters():
            grad = stacked[name].grad[k]
            torch.testing.assert_close(grad, parameter.grad, rtol=1e-9, atol=1e-12, msg=name)
        for name, buffer in own.named_buffers():
            if name in stacked:
                torch.testing.assert_close(
                    stacked[name][k], buffer, rtol=1e-9, atol=1e-12, msg=name
                )


def test_initial_weights_are_each_run_built_alone(float64, data64):
    configs = mixed_pack(config_for("resnet20", dropout=0.2))
    packed = FunctionalPackedModel(build_packed(configs, data64)[1])
    for k, config in enumerate(configs):
        torch.manual_seed(config.seed)
        alone = build_model(config, data64).state_dict()
        target = build_model(config.replace(seed=99), data64)
        packed.unpack_into(k, target)
        for name, tensor in target.state_dict().items():
            assert torch.equal(tensor, alone[name]), name


@pytest.mark.parametrize("norm", VMAP_PACKABLE)
def test_user_file_model_packs_exactly_for_every_packable_norm(norm, float64, data64, tmp_path):
    """torch.cat of branches, plain nn.Dropout, view and flatten; SGD, mixed lrs and decays."""
    config = config_for(
        f"{USER_FILE}:two_branch_net", norm=norm, norm_options=NORM_OPTIONS.get(norm, {})
    )
    assert_same_runs(mixed_pack(config), data64, tmp_path)


@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_batch_norm_subclass_with_a_tail_packs_exactly(norm, float64, data64, tmp_path):
    config = config_for(
        f"{USER_FILE}:act_norm_net", norm=norm, norm_options=NORM_OPTIONS.get(norm, {})
    )
    assert_same_runs(mixed_pack(config), data64, tmp_path)


def test_adamw_packs_exactly(float64, data64, tmp_path):
    config = config_for(f"{USER_FILE}:two_branch_net", optimizer="adamw", lr=3e-3)
    assert_same_runs(mixed_pack(config), data64, tmp_path)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_model_registered_from_python_packs_exactly(optimizer, float64, data64, tmp_path):
    def build(*, num_classes, in_channels, norm, norm_options):
        model = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1),
            make_norm(norm, 4, **norm_options),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, num_classes),
        )
        model[0].requires_grad_(False)  # a frozen layer: no gradient, no update, no decay
        return model

    saved = dict(MODELS)
    try:
        register_model(ModelEntry("packed_func_tiny", build, "a tiny ConvNet", "1x8x8"))
        config = config_for("packed_func_tiny", optimizer=optimizer, weight_decay=1e-2)
        assert_same_runs(mixed_pack(config), data64, tmp_path)
    finally:
        MODELS.clear()
        MODELS.update(saved)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_diverging_member_leaves_the_others_their_own_results(
    optimizer, float64, data64, tmp_path
):
    config = config_for(
        f"{USER_FILE}:two_branch_net", optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3
    )
    configs = mixed_pack(config)
    configs[1] = configs[1].replace(lr=1e5, schedule="constant")
    packed = assert_same_runs(configs, data64, tmp_path)
    assert packed[1].status == "diverged" and packed[0].status == packed[2].status == "done"


# -- what cannot pack ----------------------------------------------------------------------


@pytest.mark.parametrize("norm", [n for n in norm_names() if norm_entry(n).vmap_problem])
def test_norms_that_vmap_cannot_run_exactly_train_alone_and_say_why(norm):
    packable, reason = can_pack(config_for(f"{USER_FILE}:two_branch_net", norm=norm))
    assert not packable and norm_entry(norm).vmap_problem in reason
    # The channel packer, which the CIFAR ResNets take, packs them.
    assert can_pack(config_for("resnet20", norm=norm)) == (True, "")


@pytest.mark.parametrize(
    ("factory", "reason"),
    [("noisy_net", "random numbers in its forward"), ("lazy_net", "1.weight is lazy")],
)
def test_a_pack_the_general_packer_refuses_trains_its_runs_alone(factory, reason, float64, data64):
    configs = mixed_pack(config_for(f"{USER_FILE}:{factory}", steps=3, norm="none"))
    assert can_pack(configs[0]) == (True, "")  # only building the models finds it out
    with pytest.raises(PackRefused, match=reason):
        train_packed(configs, data64)
    results = train_runs(configs, data64)
    assert [r.status for r in results] == ["done"] * 3
    assert [r.pack_size for r in results] == [1, 1, 1]


@pytest.mark.parametrize(
    ("norm", "options"),
    [("cbn", {"burnin_steps": 0, "window": 2}), ("cbn_naive", {"burnin_steps": 0}), ("mabn", {})],
)
def test_flagged_norms_are_wrong_or_refused_under_vmap(norm, options, float64):
    """Why the registry flags them: cbn's window of past statistics is Python state, which vmap
    does not batch (once pooling starts, every run reads a mixed history); mabn's backward is
    an autograd.Function vmap refuses."""
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(cifar_resnet(8, norm=norm, norm_options=options))
    alone, packed = copy.deepcopy(models), FunctionalPackedModel(models)
    try:
        for _ in range(3):
            x = torch.randn(4, 2 * 3, 8, 8)
            logits = packed(x)
            logits.sum().backward()
            ours = [model(x[:, 3 * k : 3 * k + 3]) for k, model in enumerate(alone)]
            for out in ours:
                out.sum().backward()
    except RuntimeError as error:
        assert norm == "mabn" and "setup_context" in str(error)
        return
    assert norm != "mabn"
    assert max((logits[k] - ours[k]).abs().max().item() for k in range(2)) > 1e-3


def test_unflagged_zoo_norms_run_under_vmap_in_training(float64):
    """The registry flags exactly the norms vmap cannot run: every other one gives each run its
    own forward (the end-to-end equality is the user-file test above)."""
    for norm in VMAP_PACKABLE:
        models = []
        for seed in range(2):
            torch.manual_seed(seed)
            models.append(cifar_resnet(8, norm=norm, norm_options=NORM_OPTIONS.get(norm, {})))
        packed = FunctionalPackedModel(models)
        x = torch.randn(4, 2 * 3, 8, 8)
        logits = packed(x)
        for k, model in enumerate(models):
            torch.testing.assert_close(logits[k], model(x[:, 3 * k : 3 * k + 3]))
