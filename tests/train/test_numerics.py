"""The numerics settings normlab fixes for CUDA (TF32 off unless NORMLAB_TF32=1, deterministic
cuDNN), the shared step timing, and packed against alone on a GPU (skipped without one)."""

from __future__ import annotations

import math

import pytest
import torch

from normlab.data import load_dataset
from normlab.errors import NormlabError
from normlab.study.executors import check_execution
from normlab.study.work import Execution
from normlab.train import RunConfig, train_run, train_runs
from normlab.train.device import TF32_ENV, fix_numerics
from normlab.train.step_timing import time_alone, time_packed

FLAGS = (
    (torch.backends.cuda.matmul, "allow_tf32"),
    (torch.backends.cudnn, "allow_tf32"),
    (torch.backends.cudnn, "deterministic"),
    (torch.backends.cudnn, "benchmark"),
)


@pytest.fixture(autouse=True)
def restore_flags():
    saved = [getattr(owner, name) for owner, name in FLAGS]
    yield
    for (owner, name), value in zip(FLAGS, saved, strict=True):
        setattr(owner, name, value)


def test_tf32_is_off_and_cudnn_deterministic_by_default(monkeypatch):
    monkeypatch.delenv(TF32_ENV, raising=False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    settings = fix_numerics()
    assert settings == {
        "matmul_tf32": False,
        "cudnn_tf32": False,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
    }
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark


def test_the_user_turns_tf32_on_with_the_environment_variable(monkeypatch):
    monkeypatch.setenv(TF32_ENV, "1")
    settings = fix_numerics()
    assert settings["matmul_tf32"] and settings["cudnn_tf32"]
    assert torch.backends.cudnn.allow_tf32 and settings["cudnn_deterministic"]


def test_a_bad_value_is_one_error_naming_the_variable_before_training(monkeypatch):
    monkeypatch.setenv(TF32_ENV, "yes")
    with pytest.raises(NormlabError, match="NORMLAB_TF32='yes'; valid: 0"):
        fix_numerics()
    with pytest.raises(NormlabError, match="NORMLAB_TF32"):
        check_execution("local", Execution(device="cpu"))


def tiny(**changes) -> tuple[list[RunConfig], object]:
    base = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 120, "num_classes": 3, "size": 8},
        widths=(4, 4, 4),
        **{"batch_size": 4, "steps": 5, "lr": 0.05, **changes},
    )
    configs = [base.replace(seed=seed) for seed in range(3)]
    return configs, load_dataset(base.dataset, **base.dataset_options)


def test_step_timing_alone_and_packed_gives_positive_costs():
    configs, dataset = tiny()
    alone = time_alone(configs[0], dataset, steps=2, seconds=math.inf, eval_examples=8)
    packed = time_packed(configs, dataset, steps=2, seconds=math.inf, eval_examples=8)
    for timing in (alone, packed):
        assert timing.setup > 0 and timing.step > 0 and timing.example > 0
    assert time_alone(configs[0], dataset, steps=1, eval_examples=0).example == 0.0


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
def test_packed_and_alone_agree_on_cuda_with_tf32_off(monkeypatch):
    """Tolerance on CUDA: recorded losses within 1e-4 relative, accuracies equal but for one
    example (float32 with TF32 off; packed grouped convolutions reduce in another order)."""
    monkeypatch.delenv(TF32_ENV, raising=False)
    fix_numerics()
    configs, dataset = tiny()
    packed = train_runs(configs, dataset, device="cuda")
    for config, result in zip(configs, packed, strict=True):
        alone = train_run(config, dataset, device="cuda")
        assert (result.status, result.pack_size, result.device) == ("done", 3, "cuda")
        for mine, theirs in zip(result.epochs, alone.epochs, strict=True):
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=1e-4)
        assert abs(result.test_acc - alone.test_acc) <= 1 / len(dataset.y_test) + 1e-12


@cuda
def test_step_timing_on_cuda():
    configs, dataset = tiny()
    assert time_packed(configs, dataset, steps=2, device="cuda").step > 0
    assert time_alone(configs[0], dataset, steps=2, device="cuda").step > 0
