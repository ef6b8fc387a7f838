"""Expanding a spec into runs: counts and order, norm-scoped factors, exclusions, LR protocols."""

from __future__ import annotations

import pytest

from normlab.study import LrProtocol, expand, spec_from_dict
from normlab.study.plan import check_study
from normlab.train import total_steps

RUN = {
    "dataset": "synthetic",
    "dataset_options": {"num_examples": 200},
    "depth": 8,
    "widths": [4, 4, 4],
    "epochs": 1,
}


def spec(factors=None, lr=None, exclude=None, seeds=(0, 1), without=(), **run):
    base = {k: v for k, v in RUN.items() if k not in without}
    data = {"study": {"seeds": list(seeds)}, "run": {**base, **run}, "factors": factors or {}}
    if lr is not None:
        data["lr"] = lr
    if exclude is not None:
        data["exclude"] = exclude
    return spec_from_dict(data)


FIXED = {"mode": "fixed", "base_lr": 0.05}


def test_runs_are_cells_times_lr_grid_times_seeds_in_a_stable_order():
    study = spec({"norm": ["bn", "gn", "none"], "batch_size": [8, 16]}, lr={"points": 3})
    runs = expand(study)
    assert len(runs) == 3 * 2 * 3 * 2
    first = runs[:6]
    assert {r.cell["norm"] for r in first} == {"bn"} and {r.cell["batch_size"] for r in first} == {
        8
    }
    assert [r.config.seed for r in first] == [0, 1, 0, 1, 0, 1]
    assert len({r.config.run_id for r in runs}) == len(runs)
    assert runs == expand(study)


def test_no_factors_is_one_cell():
    runs = expand(spec(lr=FIXED, seeds=(0, 1, 2)))
    assert [r.cell for r in runs] == [{}, {}, {}]


def test_norm_scoped_factor_splits_only_that_norms_cells():
    study = spec(
        {"norm": ["bn", "gn"], "norm_options": {"gn": {"groups": [1, 2, 4]}}},
        lr=FIXED,
        seeds=(0,),
    )
    cells = study.cells()
    assert cells == [
        {"norm": "bn"},
        {"norm": "gn", "norm_options.gn.groups": 1},
        {"norm": "gn", "norm_options.gn.groups": 2},
        {"norm": "gn", "norm_options.gn.groups": 4},
    ]
    configs = [run.config for run in expand(study)]
    assert [c.norm_options for c in configs] == [{}, {"groups": 1}, {"groups": 2}, {"groups": 4}]


def test_bn_momentum_factor_maps_into_norm_options():
    study = spec(
        {"norm": ["bn", "none"], "norm_options": {"bn": {"momentum": [0.1, 0.01]}}},
        lr=FIXED,
        seeds=(0,),
    )
    configs = {(r.config.norm, r.config.norm_options.get("momentum")) for r in expand(study)}
    assert configs == {("bn", 0.1), ("bn", 0.01), ("none", None)}
    assert {r.config.momentum for r in expand(study)} == {0.9}  # SGD momentum untouched


def test_option_for_every_norm_and_fixed_per_norm_options_combine():
    study = spec(
        {"norm": ["bn", "gn"], "norm_options": {"eps": [1e-5, 1e-3]}},
        lr=FIXED,
        seeds=(0,),
        norm_options={"gn": {"groups": 2}},
    )
    options = sorted(
        (r.config.norm, r.config.norm_options["eps"], r.config.norm_options.get("groups"))
        for r in expand(study)
    )
    assert options == [("bn", 1e-5, None), ("bn", 1e-3, None), ("gn", 1e-5, 2), ("gn", 1e-3, 2)]


def test_exclusions_are_partial_matches():
    study = spec(
        {"norm": ["bn", "gn"], "batch_size": [2, 8], "dropout": [0.0, 0.2]},
        lr=FIXED,
        exclude=[{"norm": "bn", "batch_size": 2}, {"norm": "gn", "dropout": 0.2}],
        seeds=(0,),
    )
    cells = study.cells()
    assert len(cells) == 8 - 2 - 2  # the rules remove 2 cells each and share none
    assert all(not (c["norm"] == "bn" and c["batch_size"] == 2) for c in cells)
    assert all(not (c["norm"] == "gn" and c["dropout"] == 0.2) for c in cells)


def test_exclusion_of_a_norm_scoped_level():
    study = spec(
        {"norm": ["bn", "gn"], "batch_size": [8, 16], "norm_options": {"gn": {"groups": [1, 2]}}},
        lr=FIXED,
        exclude=[{"batch_size": 16, "norm_options": {"gn": {"groups": 2}}}],
        seeds=(0,),
    )
    cells = study.cells()
    assert {"norm": "gn", "batch_size": 16, "norm_options.gn.groups": 2} not in cells
    assert {"norm": "gn", "batch_size": 16, "norm_options.gn.groups": 1} in cells
    assert len(cells) == 2 + 4 - 1


@pytest.mark.parametrize(
    ("protocol", "batch_size", "expected"),
    [
        ({"mode": "tuned", "center": 0.1, "points": 3, "spacing": 3.0}, 32, (0.0333, 0.1, 0.3)),
        ({"mode": "tuned", "center": 0.1, "points": 3, "spacing": 3.0}, 128, (0.0667, 0.2, 0.6)),
        (
            {"mode": "tuned", "center": 0.1, "points": 2, "grid_scaling": "linear"},
            64,
            (0.115, 0.346),
        ),
        (
            {"mode": "tuned", "grid": [0.01, 0.1, 1.0], "grid_scaling": "none"},
            128,
            (0.01, 0.1, 1.0),
        ),
        ({"mode": "tuned", "grid": [0.01, 0.1], "base_batch_size": 8}, 32, (0.02, 0.2)),
        ({"mode": "scaled", "base_lr": 0.1, "rule": "linear"}, 64, (0.2,)),
        ({"mode": "scaled", "base_lr": 0.1, "rule": "sqrt"}, 64, (0.141,)),
        ({"mode": "scaled", "base_lr": 0.1, "base_batch_size": 128}, 32, (0.025,)),
        ({"mode": "fixed", "base_lr": 0.05}, 128, (0.05,)),
    ],
)
def test_lr_protocols(protocol, batch_size, expected):
    study = spec({"batch_size": [batch_size]}, lr=protocol, seeds=(0,))
    assert tuple(run.config.lr for run in expand(study)) == expected
    assert spec_from_dict({"lr": protocol}).lr.learning_rates(batch_size) == expected


def test_rounding_never_plans_one_lr_twice():
    assert LrProtocol(points=3, spacing=1.0001, center=0.1).learning_rates(32) == (0.1,)


def test_sampler_factor_reaches_the_config():
    runs = expand(spec({"sampler": ["shuffle", "balanced"]}, lr=FIXED, seeds=(0,)))
    assert [r.cell for r in runs] == [{"sampler": "shuffle"}, {"sampler": "balanced"}]
    assert [r.config.sampler for r in runs] == ["shuffle", "balanced"]
    assert runs[0].config == expand(spec(lr=FIXED, seeds=(0,)))[0].config  # the default
    assert expand(spec(lr=FIXED, seeds=(0,), sampler="balanced"))[0].config.sampler == "balanced"


def test_bn_momentum_in_run_and_as_a_factor_reaches_the_config():
    fixed = expand(spec(lr=FIXED, seeds=(0,), bn_momentum=0.01))
    assert fixed[0].config.bn_momentum == 0.01
    study = spec(
        {"norm": ["bn", "gn"], "bn_momentum": [0.1, 0.01]},
        lr=FIXED,
        seeds=(0,),
        exclude=[{"norm": "gn", "bn_momentum": 0.01}],  # gn ignores it: one gn cell is enough
    )
    assert [(r.config.norm, r.config.bn_momentum) for r in expand(study)] == [
        ("bn", 0.1),
        ("bn", 0.01),
        ("gn", 0.1),
    ]


def test_equal_steps_budget():
    study = spec({"batch_size": [8, 32]}, lr=FIXED, seeds=(0,), without=("epochs",), steps=5)
    assert [total_steps(run.config, 120) for run in expand(study)] == [5, 5]


def test_equal_epochs_budget_gives_more_steps_to_small_batches():
    study = spec({"batch_size": [8, 32]}, lr=FIXED, seeds=(0,))
    runs, dataset = check_study(study)
    assert [total_steps(r.config, len(dataset.y_train)) for r in runs] == [120 // 8, 120 // 32]


def test_factors_of_model_and_optimizer_reach_the_config():
    study = spec(
        {
            "widths": [[4, 4, 4], [4, 8, 8]],
            "optimizer": ["sgd", "adamw"],
            "norm_weight_decay": [True, False],
        },
        lr=FIXED,
        seeds=(0,),
        without=("widths",),
    )
    configs = [run.config for run in expand(study)]
    assert {c.widths for c in configs} == {(4, 4, 4), (4, 8, 8)}
    assert {(c.optimizer, c.norm_weight_decay) for c in configs} == {
        ("sgd", True),
        ("sgd", False),
        ("adamw", True),
        ("adamw", False),
    }
