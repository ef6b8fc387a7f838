"""Diagnostics in every study: gap + stability per run by default, noise and variance shift when
the spec asks, final weights kept on request, collapse recorded; the spec keys and their errors."""

from __future__ import annotations

import math

import pytest
import torch

from normlab.errors import NormlabError
from normlab.study import STORE_NAME, load_spec, open_store, run_study, spec_from_dict
from normlab.train import RunConfig, build_model

DATA = {"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8}  # tests/conftest.py


def spec(**study):
    return spec_from_dict(
        {
            "study": {"name": "diag", "seeds": [0], **study},
            "run": {
                "dataset": "synthetic",
                "dataset_options": DATA,
                "depth": 8,
                "widths": [4, 8, 8],
                "epochs": 2,
                "batch_size": 8,
                "dropout": 0.2,
                "dropout_position": "before_norm",
            },
            "factors": {"norm": ["bn", "gn"]},
            "lr": {"mode": "fixed", "base_lr": 0.05},
        }
    )


def stored(out):
    with open_store(out / STORE_NAME, create=False) as store:
        return store.records(), store.diagnostics()


def test_every_run_records_gap_and_stability_by_default(tmp_path):
    outcome = run_study(spec(), tmp_path, workers=1, threads=1)
    records, diagnostics = stored(tmp_path)
    assert outcome.trained == 2 and {r["status"] for r in records} == {"done"}
    by_norm = {r["config"]["norm"]: r for r in records}
    for norm, record in by_norm.items():
        kinds = diagnostics[record["run_id"]]
        stability = kinds["stability"]
        assert stability["diverged_at"] is None and stability["collapsed"] is False
        assert stability["grad_norm_mean"] > 0 and stability["grad_norm_variance"] >= 0
        assert 0.0 <= stability["instability"] <= 1.0 and "spikes" not in stability
        assert record["collapsed"] == 0
        # gap only where there are running statistics; noise only when asked.
        assert set(kinds) == ({"gap", "stability"} if norm == "bn" else {"stability"})
    gap = diagnostics[by_norm["bn"]["run_id"]]["gap"]
    # The EMA and batch-statistics accuracies are the run's own, not measured again.
    assert gap["running_acc"] == by_norm["bn"]["test_acc"]
    assert gap["batch_acc"] == by_norm["bn"]["test_acc_batch_stats"]
    assert 0.0 <= gap["precise_acc"] <= 1.0
    assert gap["precise_seconds"] > 0 and gap["precise_examples"] == 120  # the training split
    assert not (tmp_path / "weights").exists()


def test_noise_variance_shift_and_weights_when_the_spec_asks(tmp_path):
    asked = spec(diagnostics=["noise", "variance_shift"], keep_weights=True)
    assert asked.study_id == spec().study_id  # observing runs does not change the study
    run_study(asked, tmp_path, workers=1, threads=1)
    records, diagnostics = stored(tmp_path)
    bn = next(r for r in records if r["config"]["norm"] == "bn")
    kinds = diagnostics[bn["run_id"]]
    assert set(kinds) == {"gap", "stability", "noise", "variance_shift"}
    noise = kinds["noise"]
    assert len(noise["layers"]) > 0 and noise["batch_sizes"][0] == 2
    assert all("slope" in layer for layer in noise["layers"])
    shifted = kinds["variance_shift"]["layers"]
    assert shifted and all(0 < layer["keep_probability"] < 1 for layer in shifted)
    for record in records:
        path = tmp_path / "weights" / f"{record['run_id']}.pt"
        state = torch.load(path, weights_only=True)
        model = build_model(RunConfig.from_dict(record["config"]), _data())
        model.load_state_dict(state)


def _data():
    from normlab.data import load_dataset

    return load_dataset("synthetic", **DATA)


def test_collapsed_run_is_recorded(tmp_path):
    at_chance = spec_from_dict(
        {
            "study": {"name": "chance", "seeds": [0]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": DATA,
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
                "batch_size": 8,
                "norm": "none",
            },
            "lr": {"mode": "fixed", "base_lr": 1e-6},  # learns nothing: ends at chance
        }
    )
    run_study(at_chance, tmp_path, workers=1, threads=1)
    records, diagnostics = stored(tmp_path)
    (record,) = records
    assert record["status"] == "done" and record["collapsed"] == 1
    assert record["train_loss"] == pytest.approx(math.log(4), rel=0.1)
    assert diagnostics[record["run_id"]]["stability"]["collapsed"] is True


@pytest.mark.parametrize(
    ("study", "message"),
    [
        ({"diagnostics": ["noise", "vibes"]}, "study.diagnostics[1]: unknown diagnostic 'vibes'"),
        ({"diagnostics": "noise"}, "study.diagnostics: expected a list of strings"),
        ({"keep_weights": "yes"}, "study.keep_weights: expected true or false"),
    ],
)
def test_spec_keys_are_checked(tmp_path, study, message):
    lines = "".join(f"{k} = {_toml(v)}\n" for k, v in study.items())
    path = tmp_path / "s.toml"
    path.write_text(f'[study]\nname = "x"\n{lines}[run]\ndataset = "synthetic"\n')
    with pytest.raises(NormlabError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}:3: {message}"), str(error.value)


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"'
