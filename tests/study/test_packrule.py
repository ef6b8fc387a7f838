"""The measured pack size rule: its decision from step times (fake timings, no clock), the
doubling search, the fixed rule without a calibration, and the record a study folder keeps."""

from __future__ import annotations

import json
import sqlite3

import pytest

from normlab.errors import NormlabError
from normlab.study import STORE_NAME, calibrate, run_study, spec_from_dict
from normlab.study.calibrate import decide_pack_sizes, measure_choice
from normlab.study.dryrun import estimate_time, packing_lines
from normlab.study.packrule import (
    MAX_PACK_SIZE,
    MIN_SPEEDUP,
    PACK_RULE_FILE,
    PackChoice,
    candidate_sizes,
    choose_pack_size,
    fallback_choice,
    keep_doubling,
    load_choices,
    record_choices,
    rule_key,
)
from normlab.study.plan import PlannedRun, expand
from normlab.study.work import Execution, dataset_for, work_units
from normlab.train import RunConfig
from normlab.train.packed_func import PackRefused
from normlab.train.step_timing import StepTiming


def cell(count: int, **changes) -> list[RunConfig]:
    base = RunConfig(
        dataset="synthetic",
        dataset_options={"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
        widths=(4, 8, 8),
        **{"batch_size": 8, "steps": 6, **changes},
    )
    return [base.replace(seed=k % 3, lr=0.01 * (1 + k // 3)) for k in range(count)]


def key_of(config: RunConfig) -> str:
    return rule_key(config, tuple(dataset_for(config).input_shape))


# -- the decision --------------------------------------------------------------------------
def test_packs_at_the_k_of_the_highest_throughput_factor():
    # alone 10 ms/step; packed: K=2 12 ms (1.67x), K=4 16 ms (2.5x), K=8 40 ms (2.0x)
    choice = choose_pack_size(0.010, {2: 0.012, 4: 0.016, 8: 0.040})
    assert (choice.size, choice.source) == (4, "measured")
    assert choice.factor == pytest.approx(2.5)
    assert dict(choice.measured) == pytest.approx({2: 10 / 6, 4: 2.5, 8: 2.0})
    assert choice.reason == ""
    assert choice.describe() == "K=4, 2.50x alone (measured K 2: 1.67x, 4: 2.50x, 8: 2.00x)"


def test_trains_alone_where_packing_is_not_faster_by_the_margin():
    # best factor 1.1x (K=2): faster, but within a shared machine's noise
    choice = choose_pack_size(0.010, {2: 0.0182, 4: 0.040})
    assert choice.size == 1 and choice.factor == pytest.approx(0.02 / 0.0182)
    assert f"below the {MIN_SPEEDUP:g}x the rule asks" in choice.reason
    assert "K=2" in choice.reason
    # a packed step slower than K steps alone: alone, whatever the K
    assert choose_pack_size(0.010, {2: 0.030, 4: 0.080}).size == 1


def test_a_tie_takes_the_smaller_pack_and_bad_times_are_refused():
    assert choose_pack_size(0.010, {2: 0.010, 4: 0.020}).size == 2  # 2.0x both
    with pytest.raises(NormlabError, match="step times must be positive"):
        choose_pack_size(0.0, {2: 0.01})
    assert choose_pack_size(0.01, {}).reason == "no pack size fits the memory bound"


def test_candidate_sizes_double_up_to_the_runs_the_cap_and_the_memory_bound():
    assert candidate_sizes(15, 2, 64) == [2, 4, 8, 15]
    assert candidate_sizes(16, 2, 64) == [2, 4, 8, 16]
    assert candidate_sizes(500, 2, 64)[-1] == MAX_PACK_SIZE
    assert candidate_sizes(64, 32, 64) == [2, 4, 8]  # 8 x 32 = 256 images per packed step
    assert candidate_sizes(64, 128, 32 * 32) == [2]
    assert candidate_sizes(64, 4, 256 * 256) == [2]  # 2 x 4 x 65536 = 2**19 pixels
    assert candidate_sizes(64, 256, 32 * 32) == []  # even 2 runs exceed the bound
    assert candidate_sizes(1, 2, 64) == []


def test_doubling_stops_once_a_size_is_not_faster_than_the_best_before():
    assert keep_doubling({}) and keep_doubling({2: 1.5})
    assert keep_doubling({2: 1.5, 4: 2.0})
    assert not keep_doubling({2: 1.5, 4: 1.52})  # within the plateau
    assert not keep_doubling({2: 1.5, 4: 2.0, 8: 1.9})


def test_without_a_calibration_only_the_write_ups_resnet_packs():
    resnet = cell(1)[0]
    assert fallback_choice(resnet, 64).size == 16_384 // (8 * 64)  # the pixel budget
    too_large = fallback_choice(resnet.replace(batch_size=64), 64)
    assert too_large.size == 1 and "batch x pixels above 2048" in too_large.reason
    other = fallback_choice(resnet.replace(model="resnet20"), 64)
    assert other.size == 1 and "model 'resnet20': packing not measured" in other.reason


# -- the measurement -------------------------------------------------------------------------
def fake_timers(monkeypatch, alone: float, packed: dict[int, float]) -> list[int]:
    """Step times from tables instead of a clock; returns the pack sizes timed, in order."""
    timed: list[int] = []

    def time_alone(config, dataset):
        return StepTiming(0.1, alone, 1e-4)

    def time_packed(configs, dataset, eval_examples=128):
        timed.append(len(configs))
        return StepTiming(0.2, packed[len(configs)], 1e-4 * len(configs))

    monkeypatch.setattr(calibrate, "time_alone", time_alone)
    monkeypatch.setattr(calibrate, "time_packed", time_packed)
    return timed


def test_measure_choice_doubles_until_the_plateau_and_keeps_every_timing(monkeypatch):
    timed = fake_timers(monkeypatch, 0.010, {2: 0.012, 4: 0.016, 8: 0.040, 15: 0.07})
    group = cell(15)
    timings: dict = {}
    choice = measure_choice(group, dataset_for(group[0]), timings)
    assert timed == [2, 4, 8]  # 8 was slower than 4: 15 is not tried
    assert choice.size == 4
    assert sorted(size for *_, size in timings) == [1, 2, 4, 8]


def test_a_pack_the_packer_refuses_trains_alone_and_says_why(monkeypatch):
    fake_timers(monkeypatch, 0.010, {})

    def refused(configs, dataset, eval_examples=128):
        raise PackRefused("model 'x' cannot be packed: .item() under vmap")

    monkeypatch.setattr(calibrate, "time_packed", refused)
    group = cell(4)
    choice = measure_choice(group, dataset_for(group[0]), {})
    assert choice.size == 1 and "the packer refused it: model 'x'" in choice.reason


def test_measured_sizes_cut_the_units_and_the_fixed_rule_fills_the_rest():
    configs = cell(10)
    assert [len(u) for u in work_units(configs, "auto")] == [10]  # fixed rule: up to 32
    sizes = {key_of(configs[0]): 4}
    assert [len(u) for u in work_units(configs, "auto", sizes)] == [4, 3, 3]
    assert work_units(configs, "auto", {key_of(configs[0]): 1}) == [[c] for c in configs]


# -- the record ------------------------------------------------------------------------------
def test_the_record_round_trips_and_never_overwrites_a_choice(tmp_path):
    first = PackChoice(4, "measured", factor=2.5, measured=((2, 1.7), (4, 2.5)))
    record_choices(tmp_path, {"a": first})
    record_choices(tmp_path, {"a": PackChoice(8, "measured", 3.0), "b": PackChoice(1, "fixed")})
    assert load_choices(tmp_path) == {"a": first, "b": PackChoice(1, "fixed")}
    assert load_choices(tmp_path / "missing") == {} and load_choices(None) == {}
    (tmp_path / PACK_RULE_FILE).write_text("{not json")
    with pytest.raises(NormlabError, match="unreadable pack rule record"):
        load_choices(tmp_path)


def test_decided_sizes_prefer_the_record_then_the_measurement(tmp_path):
    configs = cell(6) + cell(4, norm="gn")
    bn, gn = key_of(configs[0]), key_of(configs[6])
    recorded = {bn: PackChoice(2, "measured", 1.5)}
    measured = {bn: PackChoice(6, "measured", 3.0), gn: PackChoice(1, "measured", 0.9)}
    execution = decide_pack_sizes(Execution(), configs, recorded, measured, tmp_path)
    assert dict(execution.pack_sizes) == {bn: 2, gn: 1}
    assert set(json.loads((tmp_path / PACK_RULE_FILE).read_text())["choices"]) == {bn, gn}
    off = decide_pack_sizes(Execution(pack="off"), configs, {}, measured, tmp_path / "off")
    assert off.pack_sizes == () and not (tmp_path / "off").exists()
    # Nothing recorded or measured (Ray, a GPU): the fixed rule, recorded as such.
    other = cell(3, model="resnet20")
    (tmp_path / "fixed").mkdir()
    fixed = decide_pack_sizes(Execution(), configs + other, {}, {}, tmp_path / "fixed")
    assert dict(fixed.pack_sizes) == {bn: 32, gn: 32, key_of(other[0]): 1}  # 16384 // (8 x 64)
    assert load_choices(tmp_path / "fixed")[key_of(other[0])].source == "fixed"


def spec(seeds: list[int]) -> dict:
    return {
        "study": {"name": "rule", "seeds": seeds},
        "run": {
            "dataset": "synthetic",
            "dataset_options": {"num_examples": 200, "num_classes": 4, "size": 8, "noise": 0.8},
            "widths": [4, 8, 8],
            "batch_size": 8,
            "steps": 4,
        },
        "factors": {"norm": ["bn"]},
        "lr": {"mode": "fixed", "base_lr": 0.01},
    }


def test_a_study_measures_once_and_later_studies_in_the_folder_reuse_the_size(
    tmp_path, monkeypatch
):
    fake_timers(monkeypatch, 0.010, {2: 0.010, 4: 0.030})  # K=2: 2x; K=4: 1.33x
    run_study(spec_from_dict(spec([0, 1, 2, 3])), tmp_path, workers=1, threads=1, calibrate=True)
    ((key, choice),) = load_choices(tmp_path).items()
    assert (choice.size, choice.source) == (2, "measured")
    # Timings that would now choose 4: the recorded 2 stays (it decided numbers already).
    timed = fake_timers(monkeypatch, 0.010, {2: 0.015, 4: 0.010})
    more = spec_from_dict(spec([0, 1, 2, 3, 4, 5, 6, 7]))
    run_study(more, tmp_path, workers=1, threads=1, calibrate=True, force_new=True)
    assert timed == []  # the rule measured nothing again (the estimate timed a pack of 2)
    assert load_choices(tmp_path) == {key: choice}
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        sizes = {row[0] for row in db.execute("SELECT pack_size FROM runs")}
    assert sizes == {2}


# -- the dry run's lines ---------------------------------------------------------------------
def test_dry_run_lines_name_each_pack_and_each_reason_to_train_alone():
    fast, slow = cell(6), cell(4, norm="gn")
    skip = cell(2, init="skipinit")
    runs = [PlannedRun(c, {}) for c in fast + slow + skip + cell(1, batch_size=4)]
    choices = {
        key_of(fast[0]): choose_pack_size(0.01, {2: 0.011, 4: 0.013, 6: 0.015}),
        key_of(slow[0]): choose_pack_size(0.01, {2: 0.025}),
    }
    lines = packing_lines(runs, "auto", choices)
    text = "\n".join(lines)
    assert lines[0] == "Packing: 6 of 13 runs train in 1 packs (sizes 6); 7 train alone"
    assert "packed: resnet norm=bn batch=8: K=6, 4.00x alone (measured K 2:" in text
    assert "alone: resnet norm=gn batch=8: packed at best 0.80x alone (K=2)" in text
    assert "alone: resnet norm=bn batch=8: init='skipinit' is not packed yet" in text
    assert "alone: resnet norm=bn batch=4: the only run of its pack key [1 run]" in text


def test_the_estimate_cuts_units_at_the_sizes_it_measured():
    runs = expand(spec_from_dict({**spec([0, 1, 2]), "factors": {"norm": ["bn", "ln"]}}))
    estimate = estimate_time(runs, dataset_for(runs[0].config), workers=1, threads=1, pack="auto")
    configs = [run.config for run in runs]
    assert estimate.units == len(work_units(configs, "auto", estimate.pack_sizes))
    assert set(estimate.pack_choices) == {key_of(configs[0]), key_of(configs[3])}
    for choice in estimate.pack_choices.values():
        assert choice.source == "measured" and choice.factor > 0
        assert [k for k, _ in choice.measured][0] == 2
