"""The adaptive protocol's rounds over a real store, with a fake trainer, fake costs and a fake
clock (no torch): which runs each round adds, and that the budget is never overrun."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from normlab.errors import NormlabError
from normlab.study import spec_from_dict
from normlab.study.budget import HEADROOM, START_SECONDS, Budget, CostModel
from normlab.study.plan import PlannedRun, expand
from normlab.study.rounds import check_budget, fitting_train_size, next_round, run_adaptive
from normlab.study.store import open_store
from normlab.train import RunResult

SPEC = {
    "study": {"protocol": "adaptive", "tuning_seeds": 1, "round_seeds": 2, "max_seeds": 9},
    "run": {"dataset": "synthetic", "epochs": 1},
    "factors": {"norm": ["bn", "gn"], "batch_size": [4, 32]},
    "lr": {"grid": [0.01, 0.1], "grid_scaling": "none", "extend": 0},
}
GAP = {4: 0.200, 32: 0.0}
"""bn's lead over gn per batch size: at 4, large and steady (resolved at the first look); at 32
none, with seed noise of 3 points (open)."""


def accuracy(run: PlannedRun) -> tuple[float, float]:
    """(val, test) of a fake run: lr 0.1 is the better one on validation; test accuracies are
    whole counts over 1,000 examples."""
    config = run.config
    val = 0.6 if config.lr == 0.1 else 0.5
    lead = GAP[config.batch_size] if config.norm == "bn" else 0.0
    wobble = 0.0 if config.batch_size == 4 else 0.03 * (-1) ** (config.seed + (config.norm == "bn"))
    steady = 0.001 * (config.seed % 3) if config.batch_size == 4 else 0.0
    return val, round(0.5 + lead + wobble + steady, 3)


class FakeTraining:
    """Records fake results in the store; each run costs one second of a fake clock (one
    worker: trained in the driver, no worker to start), and nothing may be trained twice."""

    def __init__(self, store, clock: list[float], per_run: float = 1.0) -> None:
        self.store, self.clock, self.per_run = store, clock, per_run
        self.trained: list[str] = []
        self.batches: list[tuple[str, int]] = []

    def __call__(self, batch: list[PlannedRun], phase: str | None = None) -> None:
        self.batches.append((phase or "", len(batch)))
        for run in batch:
            assert run.config.run_id not in self.trained, "trained twice"
            self.trained.append(run.config.run_id)
            val, test = accuracy(run)
            self.store.record(RunResult(run.config.run_id, "done", test_acc=test, val_acc=val))
            self.clock[0] += self.per_run


def start(tmp_path, spec):
    store = open_store(tmp_path / "normlab.db")
    planned = expand(spec)
    store.add_study(spec.study_id, spec.name, spec.to_dict())
    store.add_runs(spec.study_id, planned)
    return store, planned


def costs(records=()) -> CostModel:
    return CostModel(lambda unit: 1.0 * len(unit), workers=1, pack="off", records=records)


def test_round_1_then_more_seeds_only_where_the_comparison_is_open(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        train = FakeTraining(store, [0.0])
        train(planned)
        first = next_round(spec, store.records(spec.study_id))
        assert {(r.role, r.round, r.config.lr) for r in first} == {("eval", 1, 0.1)}
        assert sorted(r.config.seed for r in first) == sorted([0, 1, 2] * 4)  # every cell
        store.add_runs(spec.study_id, first)
        train(first)
        second = next_round(spec, store.records(spec.study_id))
    # batch 4 resolved (bn better by 20 points, steady); batch 32 open: both norms, same seeds.
    assert {r.cell["batch_size"] for r in second} == {32}
    assert sorted((r.config.norm, r.config.seed) for r in second) == [
        ("bn", 3),
        ("bn", 4),
        ("gn", 3),
        ("gn", 4),
    ]
    assert {(r.role, r.round) for r in second} == {("eval", 2)}


def test_rounds_run_to_max_seeds_for_the_open_context_without_a_budget(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        clock = [0.0]
        train = FakeTraining(store, clock)
        outcome = run_adaptive(
            spec, store, spec.study_id, planned, planned, train, costs(), Budget(None)
        )
        records = store.records(spec.study_id)
    seeds = {
        batch: sorted({r["config"]["seed"] for r in records if r["cell"]["batch_size"] == batch})
        for batch in (4, 32)
    }
    assert seeds[4] == [0, 1, 2, 1000] and seeds[32] == [*range(9), 1000]
    assert outcome.stopped == "max_seeds" and outcome.rounds == len(spec.adaptive.design().looks())
    assert len(train.trained) == len(records)


def test_a_budget_too_small_for_tuning_and_round_1_is_refused_naming_the_smallest(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        clock = [0.0]
        budget = Budget(10.0, spent_before=2.0, clock=lambda: clock[0])
        # 8 tuning runs + 12 round-1 runs at 1 s each, with the headroom, after the 2 s spent.
        smallest = math.ceil(2 + (8 + 12) * (1 + HEADROOM))
        with pytest.raises(NormlabError, match=f"budget 10s is too small.*would do is {smallest}s"):
            check_budget(spec, planned, store.records(spec.study_id), costs(), budget)


def test_the_refusal_names_the_training_set_that_would_fit(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    dataset = SimpleNamespace(y_train=[0] * 3000, num_classes=10)
    with store:
        clock = [0.0]
        budget = Budget(12.0, clock=lambda: clock[0])
        # 20 s of work (tuning and round 1); 12 s / 1.2 = 10 s available: 3000 x 0.5 ** (1 /
        # 0.85) = 1327 examples, shrunk by the headroom once more (1105), to two significant
        # digits.
        with pytest.raises(
            NormlabError, match="about 1100 training examples of the 3000 would fit"
        ):
            check_budget(spec, planned, store.records(spec.study_id), costs(), budget, dataset)


def test_fitting_train_size_declines_where_fewer_examples_would_not_help():
    spec = spec_from_dict(SPEC)
    planned = expand(spec)
    # 10000 x 0.5 ** (1 / 0.85) / 1.2 = 3686
    assert fitting_train_size(planned, 100.0, 50.0, 10_000, 10) == 3600
    assert fitting_train_size(planned, 100.0, 150.0, 10_000, 10) is None  # fits already
    assert fitting_train_size(planned, 100.0, 1.0, 10_000, 10) is None  # < 10 per class
    by_steps = [PlannedRun(run.config.replace(steps=50), run.cell) for run in planned]
    assert fitting_train_size(by_steps, 100.0, 50.0, 10_000, 10) is None  # fixed steps


def test_the_budget_stops_before_a_round_that_would_overrun_and_a_larger_one_continues(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        clock = [0.0]
        train = FakeTraining(store, clock)
        # Tuning (8 s) and round 1 (12 s) take 20 s (24 with the headroom); round 2 (4 runs)
        # needs 4.8 s with the headroom, more than the 4.5 s left.
        budget = Budget(24.5, clock=lambda: clock[0])
        check_budget(spec, planned, store.records(spec.study_id), costs(), budget)
        outcome = run_adaptive(spec, store, spec.study_id, planned, planned, train, costs(), budget)
        assert outcome.stopped == "budget" and outcome.rounds == 1
        assert outcome.next_round_seconds == pytest.approx(4.0)
        assert clock[0] <= 24.5  # the promise
        assert [phase for phase, _ in train.batches] == ["tuning", "evaluation round 1"]
        first_leg = clock[0]
        # 7.5 s more: the round it did not start, and one more (4 s each); not a third.
        records = store.records(spec.study_id)
        more = Budget(32.0, spent_before=first_leg, clock=lambda: clock[0])
        todo = [run for run in planned if run.config.run_id not in train.trained]
        outcome = run_adaptive(
            spec, store, spec.study_id, planned, todo, train, costs(records), more
        )
    assert outcome.stopped == "budget" and outcome.rounds == 3
    # Nothing finished is trained again (FakeTraining asserts it): no tuning batch this time.
    assert train.batches[2:] == [("evaluation round 2", 4), ("evaluation round 3", 4)]
    assert more.spent() <= 32.0


def test_the_pace_learns_from_measured_batches():
    model = costs()
    configs = [run.config for run in expand(spec_from_dict(SPEC))][:4]
    assert model.predict(configs) == pytest.approx(4.0)  # one worker: in the driver
    model.observe(configs, 8.0)  # twice as slow as calibrated
    assert model.pace == pytest.approx(2.0)
    assert model.predict(configs[:2]) == pytest.approx(4.0)
    # Two workers: longest first onto whichever is free, after the worker processes start.
    parallel = CostModel(lambda unit: 1.0 * len(unit), workers=2, pack="off")
    assert parallel.predict(configs) == pytest.approx(2.0 + START_SECONDS)


def test_uncalibrated_units_cost_their_measured_run_times():
    spec = spec_from_dict(SPEC)
    runs = expand(spec)
    records = [
        {"status": "done", "wall_time": 5.0, "config": run.config.to_dict()} for run in runs[:2]
    ]
    model = CostModel(lambda unit: None, workers=2, pack="off", records=records)
    same_cell = [run.config.replace(seed=0) for run in runs[:2]]
    assert model.predict(same_cell) == pytest.approx(5.0 + START_SECONDS)  # two workers
    assert CostModel(lambda unit: None, 1, "off").predict(same_cell) is None


def test_unknown_costs_start_only_while_time_is_left():
    clock = [0.0]
    budget = Budget(10.0, spent_before=4.0, clock=lambda: clock[0])
    assert budget.allows(None) and budget.allows(5.0) and not budget.allows(5.5)  # headroom
    clock[0] = 6.0
    assert not budget.allows(None) and budget.left() == 0.0
    assert Budget(None).allows(1e9)


def test_evaluation_runs_another_study_finished_are_not_trained_again(tmp_path):
    # Runs are shared by id across the store's studies (Store.add_runs): a round whose runs an
    # earlier study already trained links them and trains only the rest.
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        clock = [0.0]
        train = FakeTraining(store, clock)
        train(planned)
        first = next_round(spec, store.records(spec.study_id))
        earlier = first[:4]
        store.add_study("earlier", "earlier", spec.to_dict())
        store.add_runs("earlier", earlier)
        train(earlier)  # finished under the other study
        outcome = run_adaptive(
            spec, store, spec.study_id, planned, [], train, costs(), Budget(None)
        )
        records = store.records(spec.study_id)
    assert outcome.stopped in ("resolved", "max_seeds")
    assert {run.config.run_id for run in earlier} <= {r["run_id"] for r in records}
    assert len(train.trained) == len(set(train.trained))  # FakeTraining asserts it too


def test_a_cell_ahead_of_its_context_gets_only_the_seeds_it_lacks(tmp_path):
    spec = spec_from_dict(SPEC)
    store, planned = start(tmp_path, spec)
    with store:
        train = FakeTraining(store, [0.0])
        train(planned)
        first = next_round(spec, store.records(spec.study_id))
        store.add_runs(spec.study_id, first)
        train(first)
        second = next_round(spec, store.records(spec.study_id))
        ahead = [run for run in second if run.config.norm == "bn"]
        store.add_runs(spec.study_id, ahead)
        train(ahead)  # bn at batch 32 has seeds 0..4, gn 0..2
        third = next_round(spec, store.records(spec.study_id))
    assert sorted((r.config.norm, r.config.seed) for r in third) == [("gn", 3), ("gn", 4)]
