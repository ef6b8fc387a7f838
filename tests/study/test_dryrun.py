"""Dry run: the plan description and the calibrated time estimate (no timed assertions)."""

from __future__ import annotations

import pytest

from normlab.study import spec_from_dict
from normlab.study.dryrun import _makespan, describe_plan, estimate_time
from normlab.study.packrule import PackChoice, rule_key
from normlab.study.plan import check_study


@pytest.mark.parametrize(
    ("durations", "workers", "expected"),
    [
        ([5.0, 3.0, 2.0, 2.0], 2, 7.0),  # 5 | 3 + 2, then the last 2 waits for one of two 5s
        ([4.0, 4.0, 4.0], 4, 4.0),
        ([3.0, 2.0, 1.0], 1, 6.0),
        ([], 3, 0.0),
    ],
)
def test_makespan_hands_runs_to_the_first_free_worker(durations, workers, expected):
    assert _makespan(durations, workers) == expected


def test_estimate_covers_every_run_and_describe_lists_every_cell():
    spec = spec_from_dict(
        {
            "study": {"name": "tiny", "seeds": [0, 1]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 200},
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
            },
            "factors": {"norm": ["bn", "none"], "batch_size": [8, 16]},
            "lr": {"mode": "scaled", "base_lr": 0.05},
        }
    )
    runs, dataset = check_study(spec)
    estimate = estimate_time(runs, dataset, workers=2, threads=1)
    assert set(estimate.run_seconds) == {run.config.run_id for run in runs}
    assert all(seconds > 0 for seconds in estimate.run_seconds.values())
    assert estimate.calibrated == 4  # one per (norm, batch size)
    assert estimate.total_seconds / 2 <= estimate.wall_seconds <= estimate.total_seconds
    lines = describe_plan(spec, runs, dataset, estimate)
    text = "\n".join(lines)
    assert "Plan: 4 cells, 8 runs, 88 optimizer steps" in text  # 2 norms x 2 seeds x (15 + 7)
    assert "norm=none batch_size=16  0.025    2     7" in text
    assert "Learning rate: scaled (linear) from 0.05 at batch size 32" in text
    assert lines[-1] == "Dry run: nothing was trained or written."


def test_units_the_plan_did_not_hold_are_priced_from_the_nearest_calibrated_pack():
    spec = spec_from_dict(
        {
            "study": {"name": "packs", "seeds": [0, 1, 2]},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 200},
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
                "batch_size": 4,
            },
            "factors": {"norm": ["bn"]},
            "lr": {"mode": "tuned", "grid": [0.01, 0.03]},
        }
    )
    runs, dataset = check_study(spec)
    # A pack size recorded by an earlier leg is reused, never measured again: only the pack
    # of 6 is timed.
    key = rule_key(runs[0].config, tuple(dataset.input_shape))
    recorded = {key: PackChoice(6, "measured", factor=2.0, measured=((6, 2.0),))}
    estimate = estimate_time(runs, dataset, workers=1, threads=1, pack="auto", recorded=recorded)
    assert (estimate.units, estimate.calibrated) == (1, 1)  # one pack of 6 runs
    assert [size for *_, size in estimate.timings] == [6]
    assert estimate.pack_choices == recorded
    configs = [run.config for run in runs]
    pack_of_six = estimate.unit_seconds(configs)
    # The lr grid extension adds 3 runs (one lr, 3 seeds): half the pack, half its cost.
    added = [config.replace(lr=0.1) for config in configs[:3]]
    assert estimate.unit_seconds(added) == pytest.approx(pack_of_six / 2, rel=1e-12)
    assert sum(estimate.run_seconds.values()) == pytest.approx(pack_of_six, rel=1e-12)
    assert estimate.unit_seconds([configs[0].replace(norm="gn")]) is None  # not calibrated
