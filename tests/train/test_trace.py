"""Per-step recording (losses, gradient norms), the after-training callback and collapse, alike
for one run (engine) and for packed runs."""

import math

import pytest
import torch

from normlab.norms import norm_entry
from normlab.train import build_model, train_run, train_runs
from normlab.train.collapse import collapsed
from normlab.train.gradients import global_gradient_norm, packed_gradient_norms
from normlab.train.packed import train_packed
from normlab.train.packed_model import PackedModel


def recorder(seen: dict):
    """An after_training callback that keeps what it was given and returns one record."""

    def after_training(config, model, dataset, trace):
        seen[config.run_id] = trace
        return {"probe": {"steps": len(trace.step_losses), "finished": trace.finished}}

    return after_training


def test_engine_records_every_step_and_calls_back(tiny_config, tiny_data):
    seen: dict = {}
    result = train_run(tiny_config, tiny_data, after_training=recorder(seen))
    trace = seen[tiny_config.run_id]
    assert len(trace.step_losses) == len(trace.grad_norms) == result.steps
    assert all(math.isfinite(g) and g > 0 for g in trace.grad_norms)
    # The mean of the last epoch's step losses (equal batches) is the epoch's train loss.
    per_epoch = result.steps // tiny_config.epochs
    last = trace.step_losses[-per_epoch:]
    assert sum(last) / per_epoch == pytest.approx(result.train_loss, rel=1e-12)
    assert trace.finished and trace.final_train_acc == result.train_acc
    assert result.diagnostics == {"probe": {"steps": result.steps, "finished": True}}
    assert result.collapsed is False
    # Recording changes no number of the run.
    plain = train_run(tiny_config, tiny_data)
    assert plain.train_loss == result.train_loss and plain.test_acc == result.test_acc
    assert plain.diagnostics == {}


def test_diverged_run_is_called_back_with_its_divergent_loss(tiny_config, tiny_data):
    seen: dict = {}
    config = tiny_config.replace(norm="none", lr=1e4)
    result = train_run(config, tiny_data, after_training=recorder(seen))
    trace = seen[config.run_id]
    assert result.status == "diverged" and result.collapsed is None
    assert not trace.finished
    assert len(trace.step_losses) == result.steps + 1  # the loss that stopped it
    assert len(trace.grad_norms) == result.steps


def test_run_at_chance_is_collapsed(tiny_config, tiny_data):
    # lr so small that nothing is learned in one epoch: the loss stays at ln(4).
    result = train_run(tiny_config.replace(lr=1e-6, epochs=1, norm="none"), tiny_data)
    assert result.status == "done"
    assert result.train_loss == pytest.approx(math.log(4), rel=0.1)
    assert result.collapsed is True


def test_collapse_rule():
    assert collapsed(math.log(10), 0.1, 10)
    assert not collapsed(0.5, 0.9, 10)
    assert not collapsed(float("nan"), 0.1, 10)


def test_train_runs_keeps_weights(tiny_config, tiny_data, tmp_path):
    (result,) = train_runs([tiny_config], tiny_data, weights_dir=tmp_path)
    state = torch.load(tmp_path / f"{result.run_id}.pt", weights_only=True)
    model = build_model(tiny_config, tiny_data)
    model.load_state_dict(state)


def test_packed_runs_record_as_alone(tiny_config, tiny_data):
    configs = [tiny_config.replace(seed=seed) for seed in (0, 1)]
    alone_seen: dict = {}
    packed_seen: dict = {}
    alone = [train_run(c, tiny_data, after_training=recorder(alone_seen)) for c in configs]
    packed = train_packed(configs, tiny_data, after_training=recorder(packed_seen))
    for mine, theirs in zip(packed, alone, strict=True):
        assert mine.diagnostics == theirs.diagnostics
        assert mine.collapsed == theirs.collapsed
        a, p = alone_seen[mine.run_id], packed_seen[mine.run_id]
        # float32 rounding of grouped kernels (tests/train/test_packed.py): 1e-3 relative.
        assert p.step_losses == pytest.approx(a.step_losses, rel=1e-3)
        # A gradient is more sensitive than the loss to the weights' rounding differences (seen:
        # one step of 30 off by 2.4%); the exact per-run norm is checked in float64 below.
        assert len(p.grad_norms) == len(a.grad_norms)
        assert p.grad_norms == pytest.approx(a.grad_norms, rel=5e-2)


def test_packed_gradient_norms_are_each_runs_own(tiny_config, tiny_data):
    configs = [tiny_config.replace(seed=seed) for seed in (0, 1)]
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build_model(config, tiny_data).double())
    x = tiny_data.x_train[:8].double()
    y = tiny_data.y_train[:8]
    packed = PackedModel(models, norm_entry(tiny_config.norm).packing).double()
    loss = sum(
        torch.nn.functional.cross_entropy(logits, y) for logits in packed(x.repeat(1, 2, 1, 1))
    )
    loss.backward()
    for model in models:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    norms = packed_gradient_norms(packed.parameters(), 2)
    # float64 throughout: the grouped and separate computations agree to rounding.
    assert norms == pytest.approx([global_gradient_norm(m) for m in models], rel=1e-9)


# brn past its warm-up: the pass switches r and d off in the stacked layer as in the run alone.
@pytest.mark.parametrize(
    "norm, options",
    [("bn", {}), ("brn", {"warmup_steps": 2, "relax_steps": 4, "d_relax_steps": 4})],
)
def test_packed_precise_bn_pass_gives_each_run_its_own_recalibrated_accuracy(
    tiny_config, tiny_data, norm, options
):
    from normlab.diagnostics import precise_copy
    from normlab.train import accuracy

    base = tiny_config.replace(norm=norm, norm_options=options, batch_size=4)
    configs = [base.replace(seed=seed) for seed in (0, 1, 2)]
    seen: dict = {}
    models: dict = {}

    def keep(config, model, dataset, trace):
        models[config.run_id] = model
        return recorder(seen)(config, model, dataset, trace)

    train_packed(configs, tiny_data, after_training=keep, precise_examples=64)
    for config in configs:
        trace = seen[config.run_id]
        precise, _ = precise_copy(models[config.run_id], tiny_data.x_train, 4, 64)
        alone = accuracy(precise, tiny_data.x_test, tiny_data.y_test)
        # Same batches per slice as alone; float32 rounding may flip at most a borderline image.
        assert abs(trace.precise_test_acc - alone) <= 1 / len(tiny_data.y_test)
        assert trace.precise_examples == 64 and trace.precise_seconds > 0
    # A norm without running statistics has nothing to recalibrate: no pass, no value.
    gn = [config.replace(norm="gn", norm_options={}) for config in configs]
    seen.clear()
    train_packed(gn, tiny_data, after_training=recorder(seen), precise_examples=64)
    assert all(trace.precise_test_acc is None for trace in seen.values())
