"""PreciseBN over a pack of the general packer gives each run the statistics and the accuracy
``recalibrate_bn`` gives the run alone (float64: the same batches, merged in the same order)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from normlab.diagnostics import precise_copy
from normlab.train import RunConfig, accuracy, build_model
from normlab.train.evaluate import precise_batches
from normlab.train.packed import train_packed
from normlab.train.packed_eval import _replicate
from normlab.train.packed_func import FunctionalPackedModel
from normlab.train.packed_func_precise import recalibrate_pack

USER_FILE = Path(__file__).with_name("packed_models.py")
DATA_OPTIONS = {"num_examples": 64, "num_classes": 4, "size": 8, "noise": 0.8}  # data64's


def configs_for(norm: str, options: dict | None = None) -> list[RunConfig]:
    base = RunConfig(
        model=f"{USER_FILE}:two_branch_net",
        dataset="synthetic",
        dataset_options=DATA_OPTIONS,
        norm=norm,
        norm_options=options or {},
        batch_size=4,
        steps=6,
    )
    return [base.replace(seed=s, lr=0.05 * (s + 1)) for s in range(3)]


@pytest.mark.parametrize(
    ("norm", "options"),
    [("bn", {}), ("brn", {"warmup_steps": 1, "relax_steps": 2, "d_relax_steps": 2})],
)
def test_each_run_gets_the_statistics_recalibrate_bn_gives_it_alone(norm, options, float64, data64):
    models = []
    for config in configs_for(norm, options):
        torch.manual_seed(config.seed)
        models.append(build_model(config, data64))
    packed = FunctionalPackedModel(models, [torch.get_rng_state()] * 3)
    batches = (_replicate(b, 3) for b in precise_batches(data64.x_train, 4, 20))
    assert recalibrate_pack(packed, batches)
    stacked = packed.stacked_buffers()
    for k, model in enumerate(models):
        alone, _ = precise_copy(copy.deepcopy(model), data64.x_train, 4, 20)
        for name, buffer in alone.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                torch.testing.assert_close(stacked[name][k], buffer, rtol=1e-10, atol=1e-12)
                # The pass replaced the initial statistics (0 and 1), it did not keep them.
                assert not torch.equal(buffer, dict(model.named_buffers())[name])


def test_train_packed_records_each_runs_precise_accuracy(float64, data64):
    seen, models = {}, {}

    def keep(config, model, dataset, trace):
        seen[config.run_id], models[config.run_id] = trace, model
        return {}

    configs = configs_for("bn")
    train_packed(configs, data64, after_training=keep, precise_examples=20)
    for config in configs:
        trace = seen[config.run_id]
        precise, _ = precise_copy(models[config.run_id], data64.x_train, 4, 20)
        assert trace.precise_test_acc == accuracy(precise, data64.x_test, data64.y_test)
        assert trace.precise_examples == 20 and trace.precise_seconds > 0
