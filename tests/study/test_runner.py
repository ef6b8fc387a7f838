"""Running a study into a store: resume trains only what is unfinished, interrupts and failures
keep the rest, and a folder holding another study is refused unless ``force_new``."""

from __future__ import annotations

import sqlite3

import pytest

import normlab.train
from normlab.errors import NormlabError
from normlab.study import (
    STORE_NAME,
    StudyProgress,
    executors,
    open_store,
    run_study,
    spec_from_dict,
)


def per_run(train_run):
    """The executors call the engine with a unit (list) of runs; fake it one run at a time."""
    return lambda unit, dataset, **options: [train_run(config, dataset) for config in unit]


def tiny_spec(seeds=(0, 1), norms=("bn", "none", "gn")):
    return spec_from_dict(
        {
            "study": {"name": "tiny", "seeds": list(seeds)},
            "run": {
                "dataset": "synthetic",
                "dataset_options": {"num_examples": 200},
                "depth": 8,
                "widths": [4, 4, 4],
                "epochs": 1,
                "batch_size": 16,
            },
            "factors": {"norm": list(norms)},
            "lr": {"mode": "fixed", "base_lr": 0.05},
        }
    )


class Trained:
    """Progress callback that lists the runs trained by one call."""

    def __init__(self) -> None:
        self.run_ids: list[str] = []

    def __call__(self, run, result) -> None:
        self.run_ids.append(run.config.run_id)

    @property
    def progress(self) -> StudyProgress:
        return StudyProgress(on_result=self)


def study(spec, out, **kwargs):
    trained = Trained()
    outcome = run_study(spec, out, workers=1, threads=1, progress=trained.progress, **kwargs)
    return outcome, trained.run_ids


def rows(out, study_id=None):
    with open_store(out / STORE_NAME, create=False) as store:
        return {r["run_id"]: r for r in store.records(study_id)}


def execute_sql(out, sql, params=()):
    with sqlite3.connect(out / STORE_NAME) as db:
        db.execute(sql, params)
    db.close()


def test_a_finished_study_reruns_without_training(tmp_path, monkeypatch):
    spec = tiny_spec()
    outcome, trained = study(spec, tmp_path)
    assert (outcome.planned, outcome.trained, len(trained)) == (6, 6, 6)
    records = rows(tmp_path)
    assert {(r["status"], r["attempts"], r["threads"]) for r in records.values()} == {
        ("done", 1, 1)
    }

    def no_training(config, dataset):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(executors, "train_runs", per_run(no_training))
    outcome, trained = study(spec, tmp_path)
    assert (outcome.trained, outcome.skipped, trained) == (0, 6, [])
    assert rows(tmp_path) == records


def test_calibrate_keeps_the_first_estimate_for_the_report_and_prices_every_unit(
    tmp_path, monkeypatch
):
    def fake(config, dataset):
        return normlab.train.RunResult(config.run_id, "done", test_acc=0.5, val_acc=0.5)

    monkeypatch.setattr(executors, "train_runs", per_run(fake))
    spec = tiny_spec()
    progress = StudyProgress()
    run_study(spec, tmp_path, workers=1, threads=1, progress=progress, calibrate=True)
    with open_store(tmp_path / STORE_NAME, create=False) as store:
        estimate = store.estimate(spec.study_id)
    assert (estimate["runs"], estimate["planned"], estimate["legs_before"]) == (6, 6, 0)
    assert estimate["wall_seconds"] > 0 and estimate["workers"] == 1
    snapshot = progress.tracker.snapshot()
    assert (snapshot.finished, snapshot.total, snapshot.eta) == (6, 6, 0.0)
    execute_sql(tmp_path, "UPDATE runs SET status = 'pending'")
    run_study(spec, tmp_path, workers=1, threads=1, calibrate=True)  # a resume
    with open_store(tmp_path / STORE_NAME, create=False) as store:
        assert store.estimate(spec.study_id) == estimate  # the first estimate stays


def test_resume_trains_exactly_the_unfinished_runs(tmp_path):
    spec = tiny_spec()
    study(spec, tmp_path)
    before = rows(tmp_path)
    pending, running, failed = sorted(before)[:3]
    execute_sql(tmp_path, "UPDATE runs SET status = 'pending' WHERE run_id = ?", (pending,))
    execute_sql(tmp_path, "UPDATE runs SET status = 'running' WHERE run_id = ?", (running,))
    execute_sql(
        tmp_path, "UPDATE runs SET status = 'failed', error = 'x' WHERE run_id = ?", (failed,)
    )
    outcome, trained = study(spec, tmp_path)
    assert sorted(trained) == sorted([pending, running, failed]) and outcome.trained == 3
    after = rows(tmp_path)
    assert all(r["status"] == "done" and r["error"] is None for r in after.values())
    for run_id in (pending, running, failed):
        assert after[run_id]["attempts"] == 2
        assert after[run_id]["test_acc"] == before[run_id]["test_acc"]  # same seed, same result


def test_a_failing_run_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    spec = tiny_spec()
    real_train_run = normlab.train.train_run

    def train_run(config, dataset):
        if config.norm == "none" and config.seed == 1:
            raise ValueError("this run cannot train")
        return real_train_run(config, dataset)

    monkeypatch.setattr(executors, "train_runs", per_run(train_run))
    outcome, trained = study(spec, tmp_path)
    assert len(trained) == 6
    statuses = sorted(r["status"] for r in rows(tmp_path).values())
    assert statuses == ["done"] * 5 + ["failed"]
    (failed,) = [r for r in rows(tmp_path).values() if r["status"] == "failed"]
    assert "ValueError: this run cannot train" in failed["error"]
    assert (outcome.trained, outcome.failed) == (6, 1)  # the outcome says how many failed
    assert outcome.first_error == "ValueError: this run cannot train"
    monkeypatch.undo()
    outcome, trained = study(spec, tmp_path)  # a failed run is retried on resume
    assert trained == [failed["run_id"]] and outcome.failed == 0


def test_an_interrupt_keeps_finished_runs_and_requeues_the_rest(tmp_path):
    spec = tiny_spec()
    seen = []

    def interrupt_after_two(run, result):
        seen.append(run.config.run_id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(
            spec, tmp_path, workers=1, threads=1, progress=StudyProgress(None, interrupt_after_two)
        )
    statuses = {run_id: r["status"] for run_id, r in rows(tmp_path).items()}
    assert sorted(statuses.values()) == ["done"] * 2 + ["pending"] * 4
    assert {run_id for run_id, s in statuses.items() if s == "done"} == set(seen)
    _, trained = study(spec, tmp_path)
    assert len(trained) == 4 and not set(trained) & set(seen)


def test_another_study_is_refused_unless_force_new_then_they_share_runs(tmp_path):
    first, second = tiny_spec(seeds=(0,)), tiny_spec(seeds=(0, 1))
    study(first, tmp_path)
    with pytest.raises(NormlabError, match="holds a different study.*--force-new"):
        study(second, tmp_path)
    outcome, trained = study(second, tmp_path, force_new=True)
    # The 3 seed-0 runs are the first study's (same configs): only seed 1 trains.
    assert (outcome.trained, outcome.skipped, len(trained)) == (3, 3, 3)
    assert len(rows(tmp_path, first.study_id)) == 3 and len(rows(tmp_path, second.study_id)) == 6
    assert {r["study_id"] for r in rows(tmp_path, second.study_id).values()} == {second.study_id}
    outcome, trained = study(first, tmp_path)  # a study already in the folder resumes freely
    assert (outcome.skipped, trained) == (3, [])


def test_bad_options_are_refused_before_the_store_is_touched(tmp_path):
    with pytest.raises(NormlabError, match="--workers"):
        run_study(tiny_spec(), tmp_path, workers=0)
    assert not (tmp_path / STORE_NAME).exists()


def test_a_configuration_that_cannot_be_calibrated_still_trains(tmp_path, monkeypatch):
    # The estimate is a courtesy: training records a faulty run as failed; calibration must not
    # stop the study first.
    import normlab.study.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("cannot time this model")

    monkeypatch.setattr(runner, "estimate_time", broken)
    monkeypatch.setattr(
        executors,
        "train_runs",
        per_run(lambda c, d: normlab.train.RunResult(c.run_id, "done", test_acc=0.5, val_acc=0.5)),
    )
    outcome = run_study(tiny_spec(), tmp_path, workers=1, threads=1, calibrate=True)
    assert outcome.trained == 6
    with open_store(tmp_path / STORE_NAME, create=False) as store:
        assert store.estimate(tiny_spec().study_id) is None
