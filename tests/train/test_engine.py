"""One run: determinism, divergence as a result, clear errors, budget, recorded metrics."""

import math

import pytest
import torch

from normlab.errors import NormlabError
from normlab.train import RunConfig, build_model, train_run


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
