"""One run: determinism, divergence as a result, clear errors, budget, recorded metrics."""

import math

import pytest
import torch

from normlab.errors import NormlabError
from normlab.norms import BatchNorm, FrozenBatchNorm
from normlab.train import RunConfig, accuracy, build_model, check_config, engine, train_run
from normlab.train import evaluate as evaluate_module


def test_same_seed_gives_identical_metrics(tiny_config, tiny_data):
    first = train_run(tiny_config, tiny_data)
    second = train_run(tiny_config, tiny_data)
    assert first.status == "done"
    assert first.test_acc == second.test_acc
    assert first.test_acc_batch_stats == second.test_acc_batch_stats
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]


def test_different_seed_gives_different_run(tiny_config, tiny_data):
    first = train_run(tiny_config, tiny_data)
    other = train_run(tiny_config.replace(seed=1), tiny_data)
    assert [e.train_loss for e in first.epochs] != [e.train_loss for e in other.epochs]


def test_records_curves_and_both_statistics_modes(tiny_config, tiny_data):
    result = train_run(tiny_config, tiny_data)
    assert len(result.epochs) == tiny_config.epochs
    assert result.steps == tiny_config.epochs * (len(tiny_data.y_train) // tiny_config.batch_size)
    assert 0.0 <= result.test_acc <= 1.0 and 0.0 <= result.test_acc_batch_stats <= 1.0
    assert result.wall_time > 0 and result.images_per_sec > 0
    assert result.val_acc == result.epochs[-1].val_acc
    # The training set is learnable: the run beats chance (4 classes) clearly.
    assert result.test_acc > 0.5


def test_huge_learning_rate_is_recorded_as_diverged(tiny_config, tiny_data):
    result = train_run(tiny_config.replace(norm="none", lr=1e4), tiny_data)
    assert result.status == "diverged"
    assert result.test_acc is None
    assert "at step" in result.error


def test_divergence_in_the_last_step_is_recorded_as_diverged(tiny_config, tiny_data):
    # The training loss is checked before each update, so an explosion caused by the final one
    # shows only after it; a single step at a huge lr is that case, and must not come back "done".
    result = train_run(
        tiny_config.replace(norm="none", lr=1e30, steps=1, schedule="constant"), tiny_data
    )
    assert result.status == "diverged"
    assert result.test_acc is None
    assert "after the last step 1" in result.error


def test_batch_size_one_with_batch_statistics_is_a_clear_error(tiny_config, tiny_data):
    with pytest.raises(NormlabError, match="cannot train with batch_size=1"):
        train_run(tiny_config.replace(batch_size=1), tiny_data)


def test_batch_size_one_without_batch_statistics_trains(tiny_config, tiny_data):
    result = train_run(tiny_config.replace(norm="gn", batch_size=1, steps=5), tiny_data)
    assert result.status == "done" and result.steps == 5


def test_steps_budget_stops_mid_epoch(tiny_config, tiny_data):
    result = train_run(tiny_config.replace(steps=7), tiny_data)
    assert result.steps == 7 and len(result.epochs) == 1


def test_adamw_and_constant_schedule(tiny_config, tiny_data):
    result = train_run(
        tiny_config.replace(optimizer="adamw", lr=3e-3, schedule="constant"), tiny_data
    )
    assert result.status == "done"
    assert all(math.isclose(e.lr, 3e-3) for e in result.epochs)


def test_cosine_schedule_ends_at_zero(tiny_config, tiny_data):
    result = train_run(tiny_config, tiny_data)
    assert result.epochs[-1].lr == pytest.approx(0.0, abs=1e-12)


def test_final_weights_are_saved_and_load_with_weights_only(tiny_config, tiny_data, tmp_path):
    path = tmp_path / "weights.pt"
    result = train_run(tiny_config, tiny_data, weights_path=path)
    state = torch.load(path, weights_only=True)
    model = build_model(tiny_config, tiny_data)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        accuracy = (model(tiny_data.x_test).argmax(1) == tiny_data.y_test).float().mean()
    assert float(accuracy) == pytest.approx(result.test_acc)


def test_run_id_is_a_content_hash():
    assert RunConfig(lr=0.1).run_id == RunConfig(lr=0.1).run_id
    assert RunConfig(lr=0.1).run_id != RunConfig(lr=0.2).run_id
    assert RunConfig.from_dict(RunConfig(widths=(2, 4)).to_dict()) == RunConfig(widths=(2, 4))


def test_unknown_config_key_is_named():
    with pytest.raises(NormlabError, match="learning_rate"):
        RunConfig.from_dict({"learning_rate": 0.1})


# -- bn_momentum ----------------------------------------------------------------------------


def test_bn_momentum_reaches_every_norm_with_running_statistics(tiny_config, tiny_data):
    model = build_model(tiny_config.replace(bn_momentum=0.3), tiny_data)
    norms = [m for m in model.modules() if isinstance(m, BatchNorm)]
    assert norms and all(m.momentum == 0.3 for m in norms)
    default = build_model(tiny_config, tiny_data)
    assert all(m.momentum == 0.1 for m in default.modules() if isinstance(m, BatchNorm))


@pytest.mark.parametrize("norm", ["gn", "none", "frozen_bn"])
def test_bn_momentum_is_ignored_by_norms_that_update_no_running_statistics(
    norm, tiny_config, tiny_data
):
    model = build_model(tiny_config.replace(norm=norm, bn_momentum=0.3), tiny_data)
    # frozen_bn's statistics never move: its momentum stays 0.
    assert all(m.momentum == 0.0 for m in model.modules() if isinstance(m, FrozenBatchNorm))


def test_bn_momentum_and_the_norm_momentum_option_are_not_both_set(tiny_config, tiny_data):
    config = tiny_config.replace(bn_momentum=0.3, norm_options={"momentum": 0.01})
    with pytest.raises(NormlabError, match="bn_momentum=0.3 and norm_options.momentum=0.01"):
        train_run(config, tiny_data)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, math.nan])
def test_bn_momentum_out_of_range_is_refused(value, tiny_config, tiny_data):
    with pytest.raises(NormlabError, match=r"bn_momentum must be in \(0, 1\]"):
        check_config(tiny_config.replace(bn_momentum=value), tiny_data)


# -- sampler --------------------------------------------------------------------------------


def test_balanced_sampler_trains_on_the_runs_labels(tiny_config, tiny_data, monkeypatch):
    samplers = []

    def recording(*args, **kwargs):
        samplers.append((args[4], kwargs["labels"] is tiny_data.y_train))
        return order(*args, **kwargs)

    order = engine.epoch_order
    monkeypatch.setattr(engine, "epoch_order", recording)
    balanced = train_run(tiny_config.replace(sampler="balanced"), tiny_data)
    assert balanced.status == "done" and balanced.test_acc > 0.5
    assert samplers == [("balanced", True)] * tiny_config.epochs
    shuffled = train_run(tiny_config, tiny_data)
    assert [e.train_loss for e in balanced.epochs] != [e.train_loss for e in shuffled.epochs]


def test_unknown_sampler_is_refused(tiny_config, tiny_data):
    with pytest.raises(NormlabError, match="unknown sampler 'sequential'"):
        train_run(tiny_config.replace(sampler="sequential"), tiny_data)


# -- batch-statistics test accuracy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("norm", "batch_pass"), [("gn", False), ("frozen_bn", False), ("bn", True)]
)
def test_batch_statistics_pass_is_skipped_only_where_it_equals_eval_mode(
    norm, batch_pass, tiny_config, tiny_data, monkeypatch, tmp_path
):
    modes = []

    def recording(*args, **kwargs):
        modes.append(kwargs.get("statistics", "running"))
        return accuracy(*args, **kwargs)

    # The engine calls accuracy itself and through batch_statistics_test_accuracy.
    monkeypatch.setattr(engine, "accuracy", recording)
    monkeypatch.setattr(evaluate_module, "accuracy", recording)
    config = tiny_config.replace(norm=norm, steps=10)
    result = train_run(config, tiny_data, weights_path=tmp_path / "weights.pt")
    assert ("batch" in modes) == batch_pass
    model = build_model(config, tiny_data)
    model.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True))
    computed = accuracy(
        model, tiny_data.x_test, tiny_data.y_test, statistics="batch", batch_size=config.batch_size
    )
    assert result.test_acc_batch_stats == computed
    if not batch_pass:
        assert result.test_acc_batch_stats == result.test_acc


def test_augmentation_is_seeded_per_run_and_step(tiny_config, tiny_data, monkeypatch):
    seen = []
    real = engine.augment_batch

    def spy(x, seed, step):
        seen.append((seed, step, x.shape[0]))
        return real(x, seed, step)

    monkeypatch.setattr(engine, "augment_batch", spy)
    augmented = tiny_config.replace(augment=True)
    first, second = train_run(augmented, tiny_data), train_run(augmented, tiny_data)
    plain = train_run(tiny_config, tiny_data)
    steps = first.steps
    assert seen[:steps] == [(tiny_config.seed, s, tiny_config.batch_size) for s in range(steps)]
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert [e.train_loss for e in first.epochs] != [e.train_loss for e in plain.epochs]


def test_correlated_batches_train_and_impossible_ones_are_refused(tiny_config, tiny_data):
    result = train_run(tiny_config.replace(classes_per_batch=2), tiny_data)
    assert result.status == "done"
    assert result.steps == tiny_config.epochs * (len(tiny_data.y_train) // tiny_config.batch_size)
    with pytest.raises(NormlabError, match="classes"):
        check_config(tiny_config.replace(classes_per_batch=99), tiny_data)
